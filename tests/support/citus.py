"""A Citus cluster on 127.0.0.1 for the scale-out scenarios: a coordinator
and two workers, each a throwaway cluster (`pgcluster.Cluster`) with
`shared_preload_libraries = 'citus,jwt_rls'`.

Citus is not in Debian's packages or any registry: a contributor builds it
from its source for the major under test (TESTING.md says how). Nothing in
this repository builds or ships it; where it is not installed, `skip_reason()`
says so and the scenarios skip."""

import os

import psycopg

from .pg import MAJOR, pg_config
from .pgcluster import Cluster

CONF = ["shared_preload_libraries = 'citus,jwt_rls'",
        # Citus commits a transaction that wrote on several nodes with 2PC.
        "max_prepared_transactions = 20",
        "max_worker_processes = 16",
        # One shard count for every distributed table; few, so tests are quick.
        "citus.shard_count = 4"]


def skip_reason():
    """Why the Citus scenarios cannot run here, or None when they can."""
    library = os.path.join(pg_config("--pkglibdir"), "citus.so")
    if not os.path.exists(library):
        return (f"Citus is not installed for PostgreSQL {MAJOR} ({library} is missing); "
                "TESTING.md, 'Citus', says how to build it from its source")
    return None


class CitusCluster:
    """Coordinator and `workers` workers, started, with the citus extension
    and the workers added; `remove()` stops and deletes all of them."""

    def __init__(self, workers=2, conf=()):
        self.coordinator = Cluster(conf=CONF + list(conf))
        self.workers = [Cluster(conf=CONF + list(conf)) for _ in range(workers)]

    @property
    def nodes(self):
        return [self.coordinator] + self.workers

    def start(self):
        try:
            for node in self.nodes:
                node.start()
                with psycopg.connect(node.dsn(), autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION citus")
            with self.admin() as admin:
                admin.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.coordinator.port,))
                for worker in self.workers:
                    admin.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker.port,))
        except Exception:
            self.remove()
            raise
        return self

    def admin(self, node=None, **kw):
        """A superuser connection (autocommit) to `node` (the coordinator)."""
        return psycopg.connect((node or self.coordinator).dsn(**kw), autocommit=True)

    def remove(self):
        for node in self.nodes:
            node.remove()
