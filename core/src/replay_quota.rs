//! Each DPoP key's share of the replay table: how many of a key's proofs
//! the table may hold at once, so that one client sending fresh proofs at
//! full speed fills its own share and is refused, while every other key's
//! proofs are still accepted and recorded.
//!
//! Why a share and not eviction: the replay table never forgets a proof
//! before its window ends (`replay`'s FAIL CLOSED), so without a bound one
//! key could hold every slot and have every other key's proofs refused as
//! `Full`. Evicting to make room (as some DPoP caches do) would let the
//! evicted proofs be replayed. A share refuses only the flooding key.
//!
//! What is counted. An `owner` (SHA-256 of the key's thumbprint,
//! `owner_key`) has one slot here, holding two generations of its recorded
//! proofs, each a count and the latest expiry among them. A generation
//! whose latest expiry has passed holds only expired proofs and is
//! dropped. A new proof goes into the current generation; when the
//! previous one has been dropped, the current one becomes the previous and
//! the proof starts a new current one. So every live proof of the key is
//! in a counted generation (a generation is dropped only once all its
//! proofs have expired), and the key's count is never below its live
//! proofs: `limit` bounds what the key holds in the replay table.
//!
//! What a client gets. With proofs living at most L seconds (the replay
//! table's window), a generation lasts about L seconds before it can be
//! dropped, so the count spans at most about 2L seconds of a key's proofs:
//! a key sending no more than `limit / (2 L)` proofs per second on average
//! is never refused, and bursts of up to `limit` proofs are accepted.
//!
//! Layout, as `replay`'s: plain bytes (the extension maps them onto shared
//! memory under locks of its own), zeroed bytes an empty table. A slot is
//! `SLOT_BYTES` (56) bytes: the 32-byte owner, then the current and
//! previous generations' latest expiries (i64) and counts (u32), all
//! little-endian. A slot whose two generations are dropped is free. Slots
//! form sets of `WAYS`, and an owner may live in either of two sets (two
//! words of its digest), as in `replay`.
//!
//! Room. Every owner with a live proof needs a slot, and each live proof
//! has one owner, so a table with as many slots as the replay table never
//! runs out before the replay table does (`NoRoom` is then as rare as
//! `Full`).
//!
//! Uses `fingerprint` and `replay` (its `Outcome`, and the layout of sets
//! and partitions both tables share).

use std::ops::Range;

use crate::fingerprint::parts_digest;
use crate::replay::{bytes_for_sets, partition_span_of_sets, slots_in_sets, two_sets, Outcome};
pub use crate::replay::{partition_of, WAYS};

/// An owner: SHA-256 of a proof key's thumbprint (`owner_key`).
pub type OwnerKey = [u8; 32];

/// Bytes of one slot: owner (32), two expiries (8 each), two counts (4 each).
pub const SLOT_BYTES: usize = 56;
/// Bytes of one set.
pub const SET_BYTES: usize = SLOT_BYTES * WAYS;

const OWNER: Range<usize> = 0..32;
const CUR_EXPIRES: Range<usize> = 32..40;
const PREV_EXPIRES: Range<usize> = 40..48;
const CUR_COUNT: Range<usize> = 48..52;
const PREV_COUNT: Range<usize> = 52..56;

/// What `record_within` did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The key was within its share: the replay table was asked, and this
    /// is its answer (the proof counted when `Recorded`).
    Asked(Outcome),
    /// The key already holds `counted` proofs, not fewer than the limit:
    /// the replay table was not asked, nothing was recorded. Refuse the
    /// proof.
    OverShare { counted: u32 },
    /// The key has no slot and none is free in its two sets: the replay
    /// table was not asked. Refuse the proof (as for `Outcome::Full`).
    NoRoom,
}

/// The owner a proof key's proofs are counted under.
pub fn owner_key(jkt: &str) -> OwnerKey {
    parts_digest(&[b"jwt_rls dpop share", jkt.as_bytes()])
}

/// Bytes for a table of `slots` slots, rounded up to whole sets.
pub const fn bytes_for(slots: usize) -> usize {
    bytes_for_sets(slots, SET_BYTES)
}

/// Slots a table of `bytes` bytes holds (whole sets only).
pub const fn slots_in(bytes: usize) -> usize {
    slots_in_sets(bytes, SET_BYTES)
}

/// The bytes of partition `index` of a region split into `partitions`
/// (0 taken as 1), as `replay::partition_span` for this table's sets.
/// An owner's partition is `partition_of` (re-exported from `replay`).
pub fn partition_span(region_bytes: usize, partitions: usize, index: usize) -> Range<usize> {
    partition_span_of_sets(region_bytes, partitions, index, SET_BYTES)
}

/// One generation of an owner's proofs: how many, and the latest expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Generation {
    expires: i64,
    count: u32,
}

impl Generation {
    /// Whether it may still hold a live proof at `now` (entries are live
    /// while `now <= expires`, as in `replay`).
    fn live(self, now: i64) -> bool {
        self.count > 0 && self.expires >= now
    }
}

/// An owner's slot as read.
#[derive(Debug, Clone, Copy)]
struct Slot {
    owner: OwnerKey,
    cur: Generation,
    prev: Generation,
}

impl Slot {
    fn read(bytes: &[u8]) -> Slot {
        let i64_at = |r: Range<usize>| i64::from_le_bytes(bytes[r].try_into().unwrap_or([0; 8]));
        let u32_at = |r: Range<usize>| u32::from_le_bytes(bytes[r].try_into().unwrap_or([0; 4]));
        let mut owner = [0u8; 32];
        owner.copy_from_slice(&bytes[OWNER]);
        Slot {
            owner,
            cur: Generation {
                expires: i64_at(CUR_EXPIRES),
                count: u32_at(CUR_COUNT),
            },
            prev: Generation {
                expires: i64_at(PREV_EXPIRES),
                count: u32_at(PREV_COUNT),
            },
        }
    }

    fn write(&self, bytes: &mut [u8]) {
        bytes[OWNER].copy_from_slice(&self.owner);
        bytes[CUR_EXPIRES].copy_from_slice(&self.cur.expires.to_le_bytes());
        bytes[CUR_COUNT].copy_from_slice(&self.cur.count.to_le_bytes());
        bytes[PREV_EXPIRES].copy_from_slice(&self.prev.expires.to_le_bytes());
        bytes[PREV_COUNT].copy_from_slice(&self.prev.count.to_le_bytes());
    }

    /// The slot at `now`, with the generations holding only expired proofs
    /// dropped; None when both are (the slot is free).
    fn pruned(mut self, now: i64) -> Option<Slot> {
        if !self.cur.live(now) {
            self.cur = Generation::default();
        }
        if !self.prev.live(now) {
            self.prev = Generation::default();
        }
        (self.cur.count > 0 || self.prev.count > 0).then_some(self)
    }

    fn counted(&self) -> u32 {
        self.cur.count.saturating_add(self.prev.count)
    }

    /// Counts one more proof, live until `expires`.
    fn count(&mut self, expires: i64) {
        if self.prev.count == 0 && self.cur.count > 0 {
            self.prev = self.cur;
            self.cur = Generation::default();
        }
        self.cur.count = self.cur.count.saturating_add(1);
        self.cur.expires = self.cur.expires.max(expires);
    }
}

/// A share table over a byte slice (one partition of its region); the
/// caller holds the partition's lock for as long as it holds the table.
pub struct ShareTable<B> {
    bytes: B,
}

impl<B: AsRef<[u8]>> ShareTable<B> {
    /// The table in `bytes`, as it stands (zeroed bytes are an empty table).
    pub fn from_bytes(bytes: B) -> ShareTable<B> {
        ShareTable { bytes }
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        slots_in(self.bytes.as_ref().len())
    }

    /// Proofs counted for `owner` at `now` (0 when it has no slot).
    pub fn counted(&self, owner: &OwnerKey, now: i64) -> u32 {
        self.find(owner, now)
            .map(|(_, slot)| slot.counted())
            .unwrap_or(0)
    }

    /// Owners holding a slot at `now`.
    pub fn owners(&self, now: i64) -> usize {
        (0..self.slots())
            .filter(|&s| self.slot(s).pruned(now).is_some())
            .count()
    }

    fn slot(&self, s: usize) -> Slot {
        Slot::read(&self.bytes.as_ref()[s * SLOT_BYTES..(s + 1) * SLOT_BYTES])
    }

    fn sets(&self, owner: &OwnerKey) -> Option<[usize; 2]> {
        two_sets(owner, self.slots() / WAYS)
    }

    /// The owner's slot (its index and pruned contents) at `now`.
    fn find(&self, owner: &OwnerKey, now: i64) -> Option<(usize, Slot)> {
        let [a, b] = self.sets(owner)?;
        let distinct = if a == b { 1 } else { 2 };
        [a, b][..distinct]
            .iter()
            .flat_map(|&set| set * WAYS..(set + 1) * WAYS)
            .find_map(|s| {
                let slot = self.slot(s);
                (slot.owner == *owner)
                    .then(|| slot.pruned(now))
                    .flatten()
                    .map(|slot| (s, slot))
            })
    }

    /// A free slot for a new owner: the first free one of whichever of its
    /// two sets has more free slots.
    fn free_slot(&self, owner: &OwnerKey, now: i64) -> Option<usize> {
        let [a, b] = self.sets(owner)?;
        let distinct = if a == b { 1 } else { 2 };
        let mut best: Option<(usize, usize)> = None;
        for &set in &[a, b][..distinct] {
            let free: Vec<usize> = (set * WAYS..(set + 1) * WAYS)
                .filter(|&s| self.slot(s).pruned(now).is_none())
                .collect();
            if let Some(&first) = free.first() {
                if best.is_none_or(|(_, most)| free.len() > most) {
                    best = Some((first, free.len()));
                }
            }
        }
        best.map(|(s, _)| s)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ShareTable<B> {
    /// Asks `record` (the replay table's `insert_if_new` for this proof,
    /// whose entry lives until `expires`) only if `owner` holds fewer than
    /// `limit` proofs at `now`, and counts the proof when it was recorded.
    /// `limit` 0 is taken as 1. The caller keeps this table's lock while
    /// `record` runs, so that no other proof of the owner is counted in
    /// between.
    pub fn record_within(
        &mut self,
        owner: &OwnerKey,
        expires: i64,
        now: i64,
        limit: u32,
        record: impl FnOnce() -> Outcome,
    ) -> Share {
        let (index, mut slot) = match self.find(owner, now) {
            Some(found) => found,
            None => match self.free_slot(owner, now) {
                Some(s) => (
                    s,
                    Slot {
                        owner: *owner,
                        cur: Generation::default(),
                        prev: Generation::default(),
                    },
                ),
                None => return Share::NoRoom,
            },
        };
        let counted = slot.counted();
        if counted >= limit.max(1) {
            return Share::OverShare { counted };
        }
        let outcome = record();
        if outcome == Outcome::Recorded {
            slot.count(expires);
            slot.write(&mut self.bytes.as_mut()[index * SLOT_BYTES..(index + 1) * SLOT_BYTES]);
        }
        Share::Asked(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{self, replay_key, ReplayTable};

    const NOW: i64 = 1_796_256_000; // 2026-12-03

    fn owner(i: usize) -> OwnerKey {
        owner_key(&format!("thumbprint {i}"))
    }

    fn shares(slots: usize) -> ShareTable<Vec<u8>> {
        ShareTable::from_bytes(vec![0u8; bytes_for(slots)])
    }

    fn replays(slots: usize) -> ReplayTable<Vec<u8>> {
        ReplayTable::from_bytes(vec![0u8; replay::bytes_for(slots)])
    }

    /// Records proof `jti` of key `key` at `now`, living 60 s, through both
    /// tables, as the extension does.
    fn prove(
        shares: &mut ShareTable<Vec<u8>>,
        replays: &mut ReplayTable<Vec<u8>>,
        key: usize,
        jti: &str,
        now: i64,
        limit: u32,
    ) -> Share {
        let jkt = format!("thumbprint {key}");
        shares.record_within(&owner_key(&jkt), now + 60, now, limit, || {
            replays.insert_if_new(&replay_key(&jkt, jti), now + 60, now)
        })
    }

    #[test]
    fn share_a_key_over_its_limit_is_refused_without_asking_the_table() {
        let mut s = shares(64);
        for i in 0..5 {
            let asked = s.record_within(&owner(1), NOW + 60, NOW, 5, || Outcome::Recorded);
            assert_eq!(asked, Share::Asked(Outcome::Recorded), "proof {i}");
        }
        let mut called = false;
        let refused = s.record_within(&owner(1), NOW + 60, NOW, 5, || {
            called = true;
            Outcome::Recorded
        });
        assert_eq!(refused, Share::OverShare { counted: 5 });
        assert!(
            !called,
            "the replay table was asked for a key over its share"
        );
        // Another key is not affected.
        let other = s.record_within(&owner(2), NOW + 60, NOW, 5, || Outcome::Recorded);
        assert_eq!(other, Share::Asked(Outcome::Recorded));
        assert_eq!(s.counted(&owner(1), NOW), 5);
        assert_eq!(s.counted(&owner(2), NOW), 1);
        assert_eq!(s.owners(NOW), 2);
    }

    #[test]
    fn share_only_recorded_proofs_count() {
        let mut s = shares(64);
        for outcome in [Outcome::Replay, Outcome::Full, Outcome::Replay] {
            assert_eq!(
                s.record_within(&owner(1), NOW + 60, NOW, 1, || outcome),
                Share::Asked(outcome)
            );
        }
        assert_eq!(s.counted(&owner(1), NOW), 0);
        assert_eq!(
            s.owners(NOW),
            0,
            "a key with nothing recorded holds no slot"
        );
        assert_eq!(
            s.record_within(&owner(1), NOW + 60, NOW, 1, || Outcome::Recorded),
            Share::Asked(Outcome::Recorded)
        );
        assert_eq!(
            s.record_within(&owner(1), NOW + 60, NOW, 1, || Outcome::Recorded),
            Share::OverShare { counted: 1 }
        );
    }

    #[test]
    fn share_the_count_never_falls_below_the_live_proofs() {
        // One proof a second, each live 60 s, limit far away: at every
        // moment the count covers every proof still live.
        let mut s = shares(64);
        let mut expiries: Vec<i64> = Vec::new();
        for t in 0..1000 {
            let now = NOW + t;
            let asked = s.record_within(&owner(1), now + 60, now, 1_000_000, || Outcome::Recorded);
            assert_eq!(asked, Share::Asked(Outcome::Recorded));
            expiries.push(now + 60);
            let live = expiries.iter().filter(|&&e| e >= now).count() as u32;
            let counted = s.counted(&owner(1), now);
            assert!(counted >= live, "at {t}: {counted} counted, {live} live");
            assert!(
                counted <= 2 * 61 + 1,
                "at {t}: {counted} counted spans more than two windows"
            );
        }
    }

    #[test]
    fn share_a_key_within_limit_over_two_windows_is_never_refused() {
        // Lifetime 60 s (live for 61 seconds), limit 260: 2 proofs a second
        // (just under 260 / (2 * 61)) go on for ever; 3 a second are refused
        // some of the time.
        for (per_second, refused_expected) in [(2, false), (3, true)] {
            let mut s = shares(64);
            let mut refused = 0;
            for t in 0..600 {
                for _ in 0..per_second {
                    let now = NOW + t;
                    match s.record_within(&owner(1), now + 60, now, 260, || Outcome::Recorded) {
                        Share::Asked(Outcome::Recorded) => {}
                        Share::OverShare { .. } => refused += 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
            assert_eq!(
                refused > 0,
                refused_expected,
                "{per_second}/s: {refused} refused"
            );
        }
    }

    #[test]
    fn share_expired_generations_free_the_slot_and_the_count() {
        let mut s = shares(WAYS);
        for _ in 0..3 {
            let _ = s.record_within(&owner(1), NOW + 10, NOW, 3, || Outcome::Recorded);
        }
        assert_eq!(
            s.record_within(&owner(1), NOW + 20, NOW + 10, 3, || Outcome::Recorded),
            Share::OverShare { counted: 3 },
            "live up to and including the expiry"
        );
        assert_eq!(
            s.record_within(&owner(1), NOW + 71, NOW + 11, 3, || Outcome::Recorded),
            Share::Asked(Outcome::Recorded)
        );
        assert_eq!(s.counted(&owner(1), NOW + 11), 1);
        assert_eq!(s.owners(NOW + 72), 0);
    }

    #[test]
    fn share_a_full_set_answers_no_room_and_keeps_every_owner() {
        let mut s = shares(WAYS); // one set: every owner's two choices
        for i in 0..WAYS {
            let _ = s.record_within(&owner(i), NOW + 60, NOW, 10, || Outcome::Recorded);
        }
        let mut called = false;
        let answer = s.record_within(&owner(100), NOW + 60, NOW, 10, || {
            called = true;
            Outcome::Recorded
        });
        assert_eq!(answer, Share::NoRoom);
        assert!(!called);
        for i in 0..WAYS {
            assert_eq!(s.counted(&owner(i), NOW + 1), 1, "owner {i}");
        }
        // Once they expire the slots are free again.
        assert_eq!(
            s.record_within(&owner(100), NOW + 121, NOW + 61, 10, || Outcome::Recorded),
            Share::Asked(Outcome::Recorded)
        );
    }

    #[test]
    fn share_a_flood_from_one_key_leaves_room_for_every_other_key() {
        // The case, in the core: without shares, 100,000 fresh
        // proofs of one key fill a 4,096-slot table and the next key's
        // proof is Full; with a share of 256 the flood holds at most 256
        // slots and 2,000 other keys' proofs are all recorded.
        let mut r = replays(4096);
        let mut s = shares(4096);
        let mut flood_recorded = 0;
        for i in 0..100_000 {
            match prove(&mut s, &mut r, 0, &format!("flood {i}"), NOW, 256) {
                Share::Asked(Outcome::Recorded) => flood_recorded += 1,
                Share::OverShare { counted } => assert_eq!(counted, 256),
                other => panic!("flood proof {i}: {other:?}"),
            }
        }
        assert_eq!(flood_recorded, 256);
        for key in 1..=2000 {
            assert_eq!(
                prove(&mut s, &mut r, key, "a", NOW + 1, 256),
                Share::Asked(Outcome::Recorded),
                "key {key}"
            );
        }
        assert_eq!(r.count_live(NOW + 1), 256 + 2000);
        // And replays are still replays, for the flooding key too.
        assert_eq!(
            prove(&mut s, &mut r, 7, "a", NOW + 2, 256),
            Share::Asked(Outcome::Replay)
        );
        let mut s2 = shares(4096);
        assert_eq!(
            prove(&mut s2, &mut r, 0, "flood 0", NOW + 2, 256),
            Share::Asked(Outcome::Replay)
        );
        // Without the share (a limit as large as the table) the flood
        // fills the table and another key is refused: the test above
        // would fail.
        let mut r = replays(4096);
        let mut s = shares(4096);
        for i in 0..10_000 {
            let _ = prove(&mut s, &mut r, 0, &format!("flood {i}"), NOW, u32::MAX);
        }
        let refused = (1..=200)
            .filter(|&key| {
                prove(&mut s, &mut r, key, "a", NOW + 1, u32::MAX)
                    != Share::Asked(Outcome::Recorded)
            })
            .count();
        assert!(refused > 0, "an unshared flood left room for everyone");
    }

    #[test]
    fn share_layout_and_sizes() {
        assert_eq!(SLOT_BYTES, 56);
        let mut bytes = vec![0u8; SET_BYTES];
        let mut t = ShareTable::from_bytes(&mut bytes[..]);
        let _ = t.record_within(&owner(7), 0x0102_0304_0506_0708, 0, 9, || Outcome::Recorded);
        let slot = bytes
            .chunks(SLOT_BYTES)
            .find(|s| s != &[0u8; SLOT_BYTES])
            .unwrap();
        assert_eq!(&slot[..32], &owner(7));
        assert_eq!(&slot[32..40], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            &slot[40..56],
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        for slots in 0..100 {
            assert!(slots_in(bytes_for(slots)) >= slots);
        }
        let spans: Vec<_> = (0..4).map(|p| partition_span(1 << 16, 4, p)).collect();
        for (p, span) in spans.iter().enumerate() {
            assert_eq!(span.len() % SET_BYTES, 0);
            assert!(span.end <= 1 << 16);
            if p > 0 {
                assert_eq!(span.start, spans[p - 1].end);
            }
        }
        assert!(partition_of(&owner(1), 16) < 16);
        assert_ne!(owner_key("a"), owner_key("b"));
    }
}
