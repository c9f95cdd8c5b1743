"""Alembic revisions of the web's own tables (branch `auth`): users, login sessions, API tokens.

Applied by `Recorder.migrate` when the web server starts and by `evhub user` / `evhub token`.
"""
