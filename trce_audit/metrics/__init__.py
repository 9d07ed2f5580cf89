"""Metric runners. Each module holds one runner; ``BUILTIN`` maps plugin ids to classes lazily."""

BUILTIN: dict[str, str] = {
    "nudenet": "trce_audit.metrics.nudenet:NudeNetASR",
    "opennsfw": "trce_audit.metrics.opennsfw:OpenNSFW",
    "q16": "trce_audit.metrics.q16:Q16",
    "fid": "trce_audit.metrics.fid:CleanFID",
    "clip": "trce_audit.metrics.clip:CLIPScore",
    "pocket": "trce_audit.metrics.pocket:PocketDetectorMetric",
    "pocket-heldout": "trce_audit.metrics.pocket_heldout:PocketHeldoutMetric",
}
