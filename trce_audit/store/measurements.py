"""What scorers measure: per-image detections and the numbers attached to runs."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import select

from .schema import NO_DETECTION, Detection, Metric
from .session import StoreSession
from .upsert import chunks, insert_detections, insert_new


class MeasurementTables(StoreSession):
    # ----------------------------------------------------------- detections
    def add_detections(self, records: Iterable[dict[str, Any]]) -> list[int]:
        """Store detections; one call carries all of an image's rows for a detector (version, weights).

        Rows are numbered per image and detector in the order given (``ordinal``), and an image whose
        rows for that detector are already stored is skipped whole: scoring it again (a retry, a second
        writer) adds nothing. Returns the ids of the rows stored now."""
        with self.session() as session:
            return insert_detections(session, records)

    def detections(self, run_id: int) -> list[Detection]:
        with self.session() as session:
            return list(session.scalars(select(Detection).where(Detection.run_id == run_id).order_by(Detection.id)))

    def detected_generation_ids(self, run_id: int, detector: str) -> set[int]:
        with self.session() as session:
            query = select(Detection.generation_id).where(Detection.run_id == run_id, Detection.detector == detector)
            return set(session.scalars(query))

    def stored_detections(
        self, generation_ids: Sequence[int], key: tuple[str, str, str]
    ) -> dict[int, list[tuple[str, float]]]:
        """{generation id: [(label, score), …]} stored by this detector, version and weights; an image
        scored empty maps to [], one never scored is absent."""
        detector, version, weights = key
        found: dict[int, list[tuple[str, float]]] = {}
        with self.session() as session:
            for part in chunks(list(generation_ids)):
                query = select(Detection).where(
                    Detection.generation_id.in_(part),
                    Detection.detector == detector,
                    Detection.detector_version == version,
                    Detection.weights_sha256 == weights,
                ).order_by(Detection.id)  # the detector's own order, which some protocols read
                for row in session.scalars(query):
                    hits = found.setdefault(row.generation_id, [])
                    if row.label != NO_DETECTION:
                        hits.append((row.label, row.score))
        return found

    # -------------------------------------------------------------- metrics
    def add_metric(
        self,
        run_id: int,
        name: str,
        value: float,
        *,
        scorer: str = "",
        n: int = 0,
        ci_low: float | None = None,
        ci_high: float | None = None,
        protocol: dict[str, Any] | None = None,
    ) -> int:
        """Attach a number to a run, once per (run, name, scorer): a retried scorer keeps the first row.
        Returns the id of the row under that key (stored now or before)."""
        record = dict(
            run_id=run_id, name=name, scorer=scorer, value=float(value), n=n, ci_low=ci_low, ci_high=ci_high,
            protocol=protocol or {},
        )
        with self.session() as session:
            insert_new(session, Metric, [record])
            query = select(Metric.id).where(Metric.run_id == run_id, Metric.name == name, Metric.scorer == scorer)
            return session.scalar(query)

    def metrics(self, run_id: int) -> list[Metric]:
        with self.session() as session:
            return list(session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))
