"""`make demo`: the main job on the embedded default, as a newcomer sees it."""
