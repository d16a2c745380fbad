"""LCEL chains. Each module has one builder that takes its parts and returns a Runnable."""
