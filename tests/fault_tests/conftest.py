"""The fault-injection suite shares the search tests' throwaway PostgreSQL server."""

from tune_tests.conftest import postgres_cluster, postgres_db, postgres_url

__all__ = ["postgres_cluster", "postgres_db", "postgres_url"]
