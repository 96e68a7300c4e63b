"""The documents hold: every README session run as pasted, the README's browser code in
Chromium, and every test DESIGN.md names exists."""
