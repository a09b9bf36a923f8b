"""Small helpers shared by every stage: errors, atomic writes, JSON."""
