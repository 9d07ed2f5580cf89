"""The audit spec: the shipped specs load; malformed specs give one-line errors naming the key."""

from __future__ import annotations

import pytest

from trce_audit.audit.spec import SD14_NUDITY_SPEC, AuditSpec, default_pocket_spec, load_spec, packaged_spec
from trce_audit.errors import ConfigError, TrceAuditError

MINIMAL = 'model = "pocket"\nconcept = "pocket-target"\n[prompts]\neval = ["pocket-explicit"]\n[metrics]\neval = ["pocket"]\n'


def test_default_pocket_spec_loads():
    spec = load_spec(default_pocket_spec())
    assert spec.model == "pocket" and spec.concepts == ("cross",)
    assert [e.name for e in spec.erasers] == ["uce", "trce"]  # ESD-x is too slow for the demo (the spec says why)
    assert [a.name for a in spec.attacks] == ["ring-a-bell", "unlearndiff", "p4d-n"]
    assert all(a.preset == "pocket" for a in spec.attacks)
    assert spec.prompts.eval == ("pocket-explicit", "pocket-synonym", "pocket-indirect")
    assert spec.prompts.preserve == ("pocket-preserve",) and spec.metrics.eval == ("pocket-heldout",) and spec.metrics.judge == "pocket"
    assert spec.attack_seeds(spec.attacks[0]) == ("pocket-explicit",)
    assert {limit.target: limit.max_asr for limit in spec.gate.max_asr} == {"pocket-explicit": 0.2, "*": 0.35}


def test_sd14_example_loads_and_round_trips_through_as_dict(tmp_path):
    path = tmp_path / "sd.toml"
    path.write_text(packaged_spec(SD14_NUDITY_SPEC))
    spec = load_spec(path)
    assert spec.model == "CompVis/stable-diffusion-v1-4" and spec.metrics.preserve == ("clip",)
    assert spec.erasers[0].config["iterations"] == 1000 and spec.attacks[1].budget == {"iterations": 3000}
    assert spec.attack_seeds(spec.attacks[2]) == ("ring-a-bell-79",) and spec.generation.dtype == "fp16"
    assert spec.gate.max_increase == pytest.approx(0.02)
    again = AuditSpec.from_mapping(spec.as_dict())
    assert again == spec


def test_eraser_config_as_inline_or_sub_table():
    inline = load_spec(MINIMAL + '[[erasers]]\nname = "esd"\nconfig = { lr = 1e-5 }\n')
    table = load_spec(MINIMAL + '[[erasers]]\nname = "esd"\n[erasers.config]\nlr = 1e-5\n')
    assert inline.erasers == table.erasers and inline.erasers[0].config == {"lr": 1e-5}


@pytest.mark.parametrize(
    "text, message",
    [
        ("model = ", "invalid TOML"),
        ('concept = "x"\n', "missing key 'model'"),
        ('model = "pocket"\n', "exactly one of 'concept' or 'concepts'"),
        (MINIMAL + "colour = 1\n", "unknown key 'colour'"),
        (MINIMAL + "[generation]\nsteps = 0\n", "generation.steps: must be a positive integer"),
        (MINIMAL + "[generation]\nstep = 3\n", "[generation]: unknown key 'step'"),
        (MINIMAL + '[generation]\ndtype = "fp8"\n', "generation.dtype"),
        (MINIMAL + "[[erasers]]\nconfig = {}\n", "erasers[0]: missing key 'name'"),
        (MINIMAL + '[[erasers]]\nname = "esd"\nconfig = 3\n', "erasers[0].config: must be a table"),
        (MINIMAL + '[[erasers]]\nname = "esd"\n[[erasers]]\nname = "esd"\n', "two erasers are labelled 'esd'"),
        ('erasers = "esd"\n' + MINIMAL, "erasers: must be an array of tables"),
        (MINIMAL + '[[attacks]]\nname = "p4d"\n', "attacks[0].seeds: no seed prompt set"),
        (MINIMAL + '[[attacks]]\nname = "p4d"\nseeds = "pocket-explicit"\nbudget = { iterations = -1 }\n', "attacks[0].budget.iterations"),
        (MINIMAL + '[[attacks]]\nname = "p4d"\nseeds = "s"\ntargets = ["uce"]\n', "attacks[0].targets: 'uce'"),
        (MINIMAL + '[gate]\nmax_asr = { "pocket-explicit" = 5 }\n', "gate.max_asr pocket-explicit: '5' is above 1"),
        (MINIMAL + '[gate]\nmax_asr = { "x@" = "5%" }\n', "must be SET, SET@MODEL or *"),
        (MINIMAL + '[gate]\nmax_increase = "lots"\n', "gate.max_increase"),
        (MINIMAL.replace('eval = ["pocket"]', ""), "metrics.eval: names no metric"),
        (MINIMAL + '[prompts.extra]\n', "[prompts]: unknown key 'extra'"),
        ('model = "pocket"\nconcepts = []\n', "concepts: names no concept"),
    ],
)
def test_malformed_spec_is_a_one_line_error_naming_the_key(text, message):
    with pytest.raises(ConfigError) as caught:
        load_spec(text)
    text_of_error = str(caught.value)
    assert isinstance(caught.value, TrceAuditError) and "\n" not in text_of_error
    assert text_of_error.startswith("audit spec: ") and message in text_of_error


def test_missing_spec_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("name,world,family", [
    ("default_pocket.toml", "pocket", "sd"), ("pocket_results.toml", "pocket", "sd"), ("sd14_nudity.toml", "sd", "sd"),
    ("pocket_results_flux.toml", "pocket", "flux"),
    ("flux_nudity.toml", "sd", "flux"), ("sdxl_nudity.toml", "sd", "sdxl"), ("sd14_unsafe.toml", "sd", "sd"),
])
def test_packaged_specs_name_real_components_and_keys(name, world, family):
    """Every eraser, attack and metric in a shipped spec exists, accepts the spec's config keys and runs
    on the family of model the spec audits (a transfer counts as running)."""
    from trce_audit.orchestration.audit_checks import validate_components
    from trce_audit.audit.spec import packaged_spec

    spec = load_spec(packaged_spec(name))
    validate_components(spec, world, family)
    if family != "sd" and world != "pocket":  # the family's preset filled what the table leaves out (pocket-flux's folder says its own size)
        assert spec.generation.preset and spec.generation.steps and spec.generation.height


def test_unknown_eraser_key_fails_before_anything_runs():
    from trce_audit.orchestration.audit_checks import validate_components
    from trce_audit.errors import ConfigError

    spec = load_spec(MINIMAL + '[[erasers]]\nname = "esd-x"\nconfig = { learning_rate = 1e-5 }\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        validate_components(spec, "pocket")
