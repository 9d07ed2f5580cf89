"""Named prompt sets (benchmark files and generated sets), concept lists, loaders and fetching."""
