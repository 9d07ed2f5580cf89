"""The CI gate: check an audit's attack-success rates against absolute and regression limits."""
