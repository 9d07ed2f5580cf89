"""Everything that starts, resumes, finishes or abandons a stored run: erase, evaluate, generate, attack
(with its seeds, a weights-tier attack's curve and the judge) and the audit that chains them, with the
inputs they parse (stages, prompt-set references, concepts).

It sits below the API (``trce_audit.api`` is a typed facade over these modules) and never imports it.
Each module is imported by its full name; this package exports nothing itself.
"""
