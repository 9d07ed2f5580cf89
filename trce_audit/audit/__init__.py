"""Audits: a spec (erasers, attacks, prompt sets, metrics, gate limits) and the runner that carries it out."""
