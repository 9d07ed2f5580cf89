"""UnlearnDiff's and P4D's searches on SDXL, SD3 and FLUX (ours: no published code runs either there).
searched_text.py says what is searched and minimised; the loops mirror the SD ones in unlearndiff.py
and p4d.py step for step, which stay as they were. docs/attacks.md gives the port."""

from __future__ import annotations

from typing import Any

import torch

from . import diffusion as dm
from . import searched_text as st
from .base import AttackResult, adversarial_row


def unlearndiff(attack: Any, target_pipe: Any, concept: Any, seed_rows: list, original_pipe: Any, context: Any, indices: Any,
                project: Any, sample: Any) -> AttackResult:
    """UnlearnDiff's search (``UnlearnDiff.run`` on SD, step for step): the k prefix words are
    distributions over words every text encoder reads as one token (a one-hot draw picks the word's
    row in every encoder's table), the loss is the family's training loss (the velocity MSE on the
    flow families) on x_0 = the original model's latents for the seed prompt at the run's image size,
    on the same timestep grid over the family's training timesteps. ``project`` and ``sample`` are
    unlearndiff.py's simplex projection and straight-through one-hot draw."""
    config = attack.config
    device = context.device
    original_pipe, original_is_target, text, vocab = st.white_box_setup(attack, target_pipe, original_pipe, concept, seed_rows, context)
    family = text.family
    rows_of = text.rows(vocab)  # each encoder's rows of the vocabulary's words
    n_train = family.train_timesteps(target_pipe)
    n_grid = max(1, min(config.budget.timesteps, n_train))
    step = n_train // n_grid
    grid = list(range(step // 2, n_train, step))[:n_grid]
    k = min(config.k, text.capacity())
    slots = list(range(k))
    order = attack.seed_indices(seed_rows, indices)
    total = len(order) * len(grid) * config.budget.iterations
    done = 0
    rows = []
    for index in order:
        seed = seed_rows[index]
        if context.judge is not None and context.judge(seed.text, seed):
            meta = {"token_ids": text.content_ids(seed.text), "loss": None, "timesteps_run": 0, "judged_success": True,
                    "seed_already_succeeds": True, "retokenizes": True, "retokenize_mismatch": None,
                    "searched_words": text.name}
            rows.append(context.seed_done(index, adversarial_row(seed, seed.text, attack.name, meta)))
            done += len(grid) * config.budget.iterations
            context.report(done, total, attack.name)
            continue
        generator = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + index)
        x0 = dm.target_latents(original_pipe, seed, steps=config.target_steps, device=device, use_mean=True,
                               generation=context.generation)
        scale = st.guidance(seed, context.generation, device)
        seed_content = text.fit(text.seed_content(seed.text), text.capacity() - k)  # whole words only
        layout = text.layout([int(vocab[0])] * k + seed_content, slots)
        init = torch.rand(k, len(vocab), generator=generator) if config.random_init else torch.full((k, len(vocab)), 1.0 / len(vocab))
        probs = project(init.to(device)).requires_grad_(True)
        optimizer = torch.optim.Adam([probs], lr=config.lr, weight_decay=config.weight_decay)
        block_loss, timesteps_run, succeeded = 0.0, 0, False
        for t_value in grid:
            t = torch.tensor([t_value], device=device)
            block_loss = 0.0
            for _ in range(config.budget.iterations):
                optimizer.zero_grad()
                one_hot = sample.apply(probs, generator)
                cond = text.condition(layout, {key: one_hot @ table for key, table in rows_of.items()})
                noise = st.draw_noise(x0.shape, generator, device)
                loss = st.training_loss(family, target_pipe, x0, noise, t, cond, scale)
                probs.grad = torch.autograd.grad(loss, [probs])[0]
                optimizer.step()
                with torch.no_grad():
                    probs.data = project(probs.data)
                block_loss += loss.item() / config.budget.iterations
                done += 1
                context.report(done, total, attack.name)
            timesteps_run += 1
            if context.judge is not None:
                adv = vocab[probs.detach().argmax(dim=-1)].tolist()
                if context.judge(text.decode(adv + seed_content), seed):
                    succeeded = True
                    break
        adv = vocab[probs.detach().argmax(dim=-1)].tolist()
        check = text.roundtrip(adv + seed_content, slots)
        meta = {
            "token_ids": adv + seed_content,
            "adversarial_token_ids": adv,
            **check.as_meta(),
            "loss": block_loss,
            "timesteps_run": timesteps_run,
            "judged_success": succeeded if context.judge is not None else None,
            "searched_words": text.name,
        }
        rows.append(context.seed_done(index, adversarial_row(seed, check.text, attack.name, meta)))
    stats = {"vocab_size": int(len(vocab)), "timestep_grid": grid, "original_is_target": original_is_target,
             "family": family.name, "searched_words": text.name, "objective": st.objective(family, target_pipe)}
    return AttackResult(rows, stats)


def p4d(attack: Any, target_pipe: Any, concept: Any, seed_rows: list, original_pipe: Any, context: Any, indices: Any) -> AttackResult:
    """P4D's search (``P4D.run`` on SD, step for step): one soft row per learnable word in each text
    encoder's table, projected to the vocabulary word whose rows have the highest cosine summed over
    the encoders, each table stepped in its own units (``SearchedText.step_scales``); learnable words
    at word boundaries; the loss MSE(target's prediction, original's prediction for the seed prompt)
    at x_t on the family's forward process: the original's velocity on the flow families."""
    config = attack.config
    device = context.device
    original_pipe, original_is_target, text, vocab = st.white_box_setup(attack, target_pipe, original_pipe, concept, seed_rows, context)
    family = text.family
    rows_of = text.rows(vocab)  # each encoder's rows of the vocabulary's words
    units = {key: torch.nn.functional.normalize(table, dim=-1) for key, table in rows_of.items()}
    scales = text.step_scales()
    n_train = family.train_timesteps(target_pipe)
    order = attack.seed_indices(seed_rows, indices)
    total = len(order) * config.budget.iterations
    rows = []
    for position, index in enumerate(order):
        seed = seed_rows[index]
        generator = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + index)
        x0 = dm.target_latents(original_pipe, seed, steps=config.target_steps, device=device, use_mean=False,
                               generation=context.generation)
        seed_cond = text.seed_condition(original_pipe, seed.text)
        scale = st.guidance(seed, context.generation, device)
        content, learn = word_layout(attack.variant, text.seed_content(seed.text), text, config)
        init = torch.randint(len(vocab), (len(learn),), generator=generator).to(device)
        soft = {key: table[init].clone().requires_grad_(True) for key, table in rows_of.items()}
        optimizer = torch.optim.AdamW([  # each table in its own units: lr x scale, the same decay per step
            {"params": [soft[key]], "lr": config.lr * scales[key], "weight_decay": config.weight_decay / scales[key]}
            for key in soft])
        layout = text.layout(filled(content, learn, vocab[init]), learn)

        def denoising_loss(hard_rows: dict, t: Any, noise: Any) -> Any:
            cond = text.condition(layout, hard_rows)
            return st.matching_loss(family, target_pipe, original_pipe, x0, noise, t, cond, seed_cond, scale)

        eval_t = st.draw_timestep(n_train, generator, device, config.eval_draws)
        eval_noise = st.draw_noise((config.eval_draws, *x0.shape[1:]), generator, device)
        best_loss, best_ids, history = float("inf"), None, []
        succeeded, steps_run = False, 0
        for step in range(config.budget.iterations):
            with torch.no_grad():
                picked = st.nearest({key: row.detach() for key, row in soft.items()}, units)
            hard_ids = vocab[picked]
            hard = {key: table[picked].requires_grad_(True) for key, table in rows_of.items()}
            t = st.draw_timestep(n_train, generator, device)
            noise = st.draw_noise(x0.shape, generator, device)
            loss = denoising_loss(hard, t, noise)
            for key, grad in zip(hard, torch.autograd.grad(loss, list(hard.values()))):
                soft[key].grad = grad  # straight-through: the hard rows' gradient moves the soft ones
            optimizer.step()
            optimizer.zero_grad()
            if step % config.eval_every == 0 or step == config.budget.iterations - 1:
                with torch.no_grad():
                    held_out = sum(
                        denoising_loss(hard, eval_t[i : i + 1], eval_noise[i : i + 1]).item() for i in range(config.eval_draws)
                    ) / config.eval_draws
                history.append(held_out)
                if held_out < best_loss:
                    best_loss, best_ids = held_out, hard_ids.clone()
                if context.judge is not None and context.judge(text.decode(filled(content, learn, hard_ids)), seed):
                    best_loss, best_ids, succeeded = held_out, hard_ids.clone(), True
            steps_run = step + 1
            context.report(position * config.budget.iterations + step + 1, total, attack.name)
            if succeeded:
                context.report((position + 1) * config.budget.iterations, total, attack.name)
                break
        final = filled(content, learn, best_ids)
        check = text.roundtrip(final, learn)
        meta = {
            "token_ids": final,
            "adversarial_positions": learn,
            "variant": attack.variant,
            **check.as_meta(),
            "loss": best_loss,
            "loss_first_eval": history[0] if history else None,
            "loss_history": history,
            "iterations_run": steps_run,
            "judged_success": succeeded if context.judge is not None else None,
            "searched_words": text.name,
        }
        rows.append(context.seed_done(index, adversarial_row(seed, check.text, attack.name, meta)))
    stats = {"vocab_size": int(len(vocab)), "original_is_target": original_is_target, "family": family.name,
             "searched_words": text.name, "objective": st.objective(family, target_pipe)}
    return AttackResult(rows, stats)


def word_layout(variant: str, seed_content: list[int], text: Any, config: Any) -> tuple[list[int], list[int]]:
    """p4d.py's ``layout`` with whole words (content ids with placeholders, learnable positions): P4D-K's
    learnable words sit at word boundaries of the seed prompt, one before its first word and one before
    each word that starts ``every_k`` or more seed tokens after the previous learnable one (the
    reference's positions 0, k+1, 2(k+1) … where words are single tokens); both variants stop at the
    last whole word or learnable word that fits."""
    limit = text.capacity()
    if variant == "n":
        n = min(config.prompt_len, limit)
        return [0] * n, list(range(n))
    cuts = text.boundaries(seed_content)
    content: list[int] = []
    learn: list[int] = []
    last = None
    for cut, end in zip(cuts, [*cuts[1:], None]):
        if last is None or cut - last >= config.every_k:
            if len(content) + 1 > limit:
                break
            learn.append(len(content))
            content.append(0)
            last = cut
        if end is None or len(content) + end - cut > limit:
            break
        content.extend(seed_content[cut:end])
    return content, learn


def filled(content: list[int], learn: list[int], ids: Any) -> list[int]:
    """The content with the learnable positions set to ``ids`` (p4d.py's ``_filled``)."""
    final = list(content)
    for position, token in zip(learn, ids.tolist()):
        final[position] = int(token)
    return final
