"""SQLAlchemy 2 (ORM, psycopg 3 driver) behind PgBouncer in transaction mode.

The token rides on the Session (`info["jwt"]`); an `after_begin` hook binds
it as the first statement of every transaction the Session begins, so each
request's queries, however the ORM issues them, run with its claims only.
prepare_threshold=None: see psycopg_pool_recipe."""

import uuid

from sqlalchemy import event, select, text
from sqlalchemy.engine import create_engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from . import PROBE


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    amount: Mapped[int]
    note: Mapped[str | None]


@event.listens_for(Session, "after_begin")
def bind_token(session, transaction, connection):
    token = session.info.get("jwt")
    if token is not None:
        connection.execute(text("SELECT jwt_rls.authenticate(:token)"), {"token": token})


def connect(url):
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"),
                           connect_args={"prepare_threshold": None}, pool_size=2, max_overflow=0)
    return sessionmaker(engine)


def as_tenant(sessions, token, work):
    """The recipe: a Session that carries the token, one transaction."""
    with sessions(info={"jwt": token}) as session, session.begin():
        return work(session)


def without_token(sessions, work):
    with sessions() as session, session.begin():
        return work(session)


def invoice_tenants(session):
    return [str(t) for t in session.scalars(select(Invoice.tenant_id))]


def probe(session):
    return dict(session.execute(text(PROBE)).mappings().one())


def close(sessions):
    sessions.kw["bind"].dispose()
