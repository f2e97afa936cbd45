"""The chat history's schema versions: Alembic's environment (``env.py``) and its
revisions (``versions/``), run by :mod:`askstream.service._migrate`.

Files here are data for Alembic rather than modules to import: ``env.py`` runs
only inside an Alembic command, and the revisions are loaded by path.
"""
