"""Internal helpers with no model knowledge: atomic writes, optional imports."""
