"""Problems apart from training: the settings, their seeded data, users' operators and natural images (no model here)."""
