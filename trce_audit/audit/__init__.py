"""Audit specs: the TOML language of an audit (erasers, attacks, prompt sets, metrics, gate limits),
read and checked here; trce_audit/orchestration/audit_runs.py carries a spec out."""
