"""ORM models of the result store. Every number trce-audit reports is a row here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("started", "complete", "failed")
# The label stored for an image in which a detector found nothing: "scored, empty" differs from "not scored".
NO_DETECTION = "(none)"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """One execution of a component. ``identity`` leaves out runtime-only options (batch size, device)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # Text, not VARCHAR(n), for every name a user or plugin chooses: Postgres enforces VARCHAR lengths.
    component: Mapped[str] = mapped_column(Text)
    component_version: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    runtime: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_ref: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    model_fingerprint: Mapped[Optional[str]] = mapped_column(String(64), nullable=True, index=True)
    prompt_set_id: Mapped[Optional[int]] = mapped_column(ForeignKey("prompt_sets.id"), nullable=True)
    parent_run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id"), nullable=True)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="started", index=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(nullable=True)

    prompt_set: Mapped[Optional["PromptSet"]] = relationship(foreign_keys=[prompt_set_id])
    metrics: Mapped[list["Metric"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Artefact(Base):
    """A model produced by a run (an erased pipeline as a diffusers folder)."""

    __tablename__ = "artefacts"
    __table_args__ = (Index("uq_artefacts_sha256_path", "sha256", "path", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="model")
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    parent_model: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    parent_fingerprint: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id"), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptSet(Base):
    """A named list of prompts; ``sha256`` is over its rows, so equal content is stored once."""

    __tablename__ = "prompt_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    source: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("prompt_sets.id"), nullable=True)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", use_alter=True), nullable=True)
    n_rows: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompts: Mapped[list["Prompt"]] = relationship(
        back_populates="prompt_set", order_by="Prompt.idx", cascade="all, delete-orphan"
    )


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("prompt_set_id", "idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_set_id: Mapped[int] = mapped_column(ForeignKey("prompt_sets.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    guidance: Mapped[float] = mapped_column(Float)
    row_hash: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    prompt_set: Mapped[PromptSet] = relationship(back_populates="prompts")


class Generation(Base):
    """One image. ``sample_hash`` covers prompt, seed, guidance, settings and model fingerprint."""

    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("run_id", "prompt_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    sample_hash: Mapped[str] = mapped_column(String(64), index=True)
    image_path: Mapped[str] = mapped_column(Text)
    image_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompt: Mapped[Prompt] = relationship()


class Detection(Base):
    """A detector's score for one label on one image, with its box where the detector gives one
    ([x, y, width, height] in image pixels).

    A detector may report one label several times (NudeNet: one row per box), so ``ordinal`` numbers
    an image's rows per detector, version and weights in the detector's output order; with it the rows
    have a key, and scoring an image again adds nothing."""

    __tablename__ = "detections"
    __table_args__ = (
        Index("ix_detections_generation_detector", "generation_id", "detector"),
        Index(
            "uq_detections_key", "generation_id", "detector", "detector_version", "weights_sha256", "ordinal",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    detector: Mapped[str] = mapped_column(Text)
    detector_version: Mapped[str] = mapped_column(Text, default="")
    weights_sha256: Mapped[str] = mapped_column(String(64), default="")
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    box: Mapped[Optional[list[Any]]] = mapped_column(JSON, nullable=True)


class Metric(Base):
    """A reported number with its sample size, interval and the protocol that defines it.

    ``scorer`` names what produced it (a metric runner, with its preset where it has several), so one
    eval holds the same number under several scorers, each once."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name", "scorer", name="uq_metrics_run_name_scorer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    scorer: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer, default=0)
    ci_low: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    ci_high: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    protocol: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="metrics")

    def as_record(self) -> dict[str, Any]:
        """The number as the API returns it (eval results, `runs show`)."""
        return {"name": self.name, "scorer": self.scorer, "value": self.value, "n": self.n, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "protocol": self.protocol}


class AttackRow(Base):
    """One seed prompt's adversarial prompt, stored as soon as its search ends: a killed attack
    resumes at the next seed. ``idx`` is the seed's position in the attack's seed list (its RNG
    stream)."""

    __tablename__ = "attack_rows"
    __table_args__ = (UniqueConstraint("run_id", "idx", name="uq_attack_rows_run_idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    seed_prompt_id: Mapped[Optional[int]] = mapped_column(ForeignKey("prompts.id"), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    guidance: Mapped[float] = mapped_column(Float)
    loss: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
