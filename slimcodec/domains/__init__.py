"""Content domains other than photos, for domain adaptation (generators and loaders)."""
