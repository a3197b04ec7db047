"""The in-memory campaign queue: what a check-in takes, and what a reload may put back."""

from __future__ import annotations

from fleetctl.server.campaign_queue import CampaignQueue
from storage.campaigns import Pending


def test_a_reload_older_than_a_hand_out_does_not_queue_it_again() -> None:
    queue = CampaignQueue()
    item = Pending(campaign_id=7, host_id=3, sql="SELECT 1", expires_at=2_000)
    queue.load([item], queue.mark())
    assert queue.take(3, now=1_000) == {7: "SELECT 1"}
    assert queue.sent() == {(7, 3): 1_000}

    # The database still says queued: the hand-out is not written yet.
    queue.load([item], queue.mark())
    assert queue.take(3, now=1_001) == {}

    queue.written(queue.sent())
    assert queue.sent() == {}


def test_a_hand_out_repeated_while_flushing_is_kept_for_the_next_flush() -> None:
    queue = CampaignQueue()
    item = Pending(campaign_id=7, host_id=3, sql="SELECT 1", expires_at=2_000)
    queue.load([item], queue.mark())
    queue.take(3, now=1_000)
    flushing = queue.sent()
    queue.add([item])  # queued again (a restart elsewhere) and handed out again meanwhile
    queue.take(3, now=1_005)
    queue.written(flushing)
    assert queue.sent() == {(7, 3): 1_005}


def test_expired_items_are_not_handed_out() -> None:
    queue = CampaignQueue()
    queue.load([Pending(campaign_id=1, host_id=1, sql="SELECT 1", expires_at=100)], 0)
    assert queue.take(1, now=100) == {}
    assert queue.sent() == {}


def test_a_reload_read_before_a_campaign_was_committed_keeps_it() -> None:
    queue = CampaignQueue()
    old = Pending(campaign_id=1, host_id=1, sql="SELECT 1", expires_at=2_000)
    queue.load([old], queue.mark())
    mark = queue.mark()  # a reload starts reading the database...
    new = [Pending(campaign_id=2, host_id=h, sql="SELECT 2", expires_at=2_000) for h in (1, 2)]
    queue.add(new)  # ...a campaign commits and is queued, and a host takes it...
    assert queue.take(2, now=1_000) == {2: "SELECT 2"}
    queue.load([old], mark)  # ...and the reload, which missed it, lands
    assert queue.take(1, now=1_000) == {1: "SELECT 1", 2: "SELECT 2"}
    assert queue.take(2, now=1_000) == {}

    queue.load([], queue.mark())  # a later reload is the database's word again
    assert len(queue) == 0
