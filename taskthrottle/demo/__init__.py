"""The main job: a real Redis, a vendor API that punishes excess with 429s, real workers."""
