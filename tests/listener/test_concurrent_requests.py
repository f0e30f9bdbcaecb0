"""One user's requests racing each other, each on its own connection and released
together, as a browser (or a script) firing them in parallel through PostgREST would.
Every limit must hold under the race, not only one request at a time: credits, the
request limit, the purchases waiting for a checkout, one voice per design preview, and
one refund per cancelled task."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable

import psycopg

from tests.listener.conftest import Admin, Browser

RACERS = 8


def race(attempt: Callable[[], object]) -> Counter[str]:
    """Runs `attempt` on RACERS threads released at once; counts each outcome:
    'ok' or the SQLSTATE it raised."""
    start = threading.Barrier(RACERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        try:
            attempt()
            outcome = "ok"
        except psycopg.Error as exc:
            outcome = str(exc.sqlstate)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(outcomes)


def email(user: Browser) -> str:
    return f"{user.user_id}@example.com"


def balances_match_ledger(admin: Admin) -> bool:
    return bool(
        admin.value(
            "select bool_and(p.credits = (select coalesce(sum(l.delta), 0) from private.credit_ledger l"
            " where l.user_id = p.id)) from profiles p"
        )
    )


def test_racing_generations_spend_no_more_than_the_balance(admin: Admin) -> None:
    user = admin.new_user()
    voice = admin.value("select tests.make_ready_voice(%s, 'Racer')", (email(user),))
    admin.rows("select tests.set_credits(%s, 3)", (email(user),))

    outcomes = race(lambda: user.generate(voice))

    assert outcomes == Counter({"ok": 3, "PT402": RACERS - 3})
    assert admin.value("select credits from profiles where id = %s", (user.user_id,)) == 0
    assert admin.value("select count(*) from generations where user_id = %s", (user.user_id,)) == 3
    assert admin.value("select count(*) from pgmq.q_generate") == 3
    assert balances_match_ledger(admin)


def test_racing_requests_stay_within_the_request_limit(admin: Admin) -> None:
    user = admin.new_user()
    voice = admin.value("select tests.make_ready_voice(%s, 'Racer')", (email(user),))
    admin.rows("update private.request_limits set max_requests = 2 where task_type = 'generate'")

    outcomes = race(lambda: user.generate(voice))

    # PostgREST turns SQLSTATE PGRST into the HTTP status the error names (429).
    assert outcomes == Counter({"ok": 2, "PGRST": RACERS - 2})
    assert admin.value("select count(*) from generations where user_id = %s", (user.user_id,)) == 2


def test_racing_purchases_stay_within_the_waiting_limit(admin: Admin) -> None:
    user = admin.new_user()

    outcomes = race(lambda: user.buy("starter"))

    assert outcomes == Counter({"ok": 5, "PT429": RACERS - 5})
    assert admin.value("select count(*) from pgmq.q_checkout") == 5


def test_racing_saves_of_one_preview_make_one_voice(admin: Admin) -> None:
    user = admin.new_user()
    preview = admin.value("select tests.make_completed_preview(%s)", (email(user),))

    outcomes = race(lambda: user.save_voice(preview, name=f"Saved {uuid.uuid4().hex[:6]}"))

    assert outcomes["ok"] == 1
    # The losers see the unique key, or the trigger's own check once the winner committed.
    assert set(outcomes) - {"ok"} <= {"23505", "22023"}
    assert admin.value("select count(*) from voices where design_preview_id = %s", (preview,)) == 1


def test_racing_cancels_refund_once(admin: Admin) -> None:
    user = admin.new_user()
    voice = admin.value("select tests.make_ready_voice(%s, 'Racer')", (email(user),))
    generation = user.generate(voice, "x" * 1200)  # three credits
    task = admin.task_of("generation_id", generation)["id"]

    outcomes = race(lambda: user.cancel(task))

    assert outcomes == Counter({"ok": RACERS})
    assert admin.value("select status from tasks where id = %s", (task,)) == "cancelled"
    assert (
        admin.value(
            "select count(*) from private.credit_ledger where task_id = %s and reason = 'refund'",
            (task,),
        )
        == 1
    )
    assert admin.value("select credits from profiles where id = %s", (user.user_id,)) == 100
    assert balances_match_ledger(admin)
