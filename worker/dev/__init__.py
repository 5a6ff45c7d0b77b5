"""Development mode: the whole relay in one process on embedded defaults (`isograd-relay dev`)."""
