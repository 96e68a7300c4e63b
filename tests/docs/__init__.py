"""The documents hold: every session they give a person to paste runs as written, their links lead
somewhere, the README's map names real rooms, configuration.md is generated, and every test
DESIGN.md names exists."""
