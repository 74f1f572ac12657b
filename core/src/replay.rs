//! The DPoP replay table: which proofs (by key thumbprint and `jti`) have
//! been accepted and are still inside their `iat` window, so that a second
//! use of one is refused (RFC 9449 section 11.1).
//!
//! It is built for shared memory, one table for every backend: a fixed
//! number of slots laid out in a byte slice the caller provides, with an
//! explicit little-endian encoding and nothing else (no pointers, no
//! allocation, no `unsafe`), so the extension only maps it onto its region
//! and takes a lock. Zeroed bytes are an empty table, as a new segment is.
//!
//! FAIL CLOSED. An entry is never evicted before its expiry: forgetting a
//! proof early would let its replay through. When a proof finds no room,
//! `insert_if_new` answers `Outcome::Full` and the caller refuses the proof
//! (the client makes a new one and retries). A table too small for its
//! traffic thus refuses proofs; it never accepts a replay.
//!
//! Layout. A slot is `SLOT_BYTES` (40) bytes: the 32-byte key, then its
//! expiry as an i64 in little-endian (Unix seconds; 0 marks a slot never
//! used). An entry whose expiry is past is free space, reused in place; no
//! sweeping is needed. Slots are grouped in sets of `WAYS` (8), and a key may
//! live in either of two sets, picked by two independent words of its
//! digest; it goes to the one with more free slots. An insertion thus
//! reads at most 16 slots (640 bytes) whatever the table's size, which keeps
//! the lock short. Why two choices: in a simulation filling tables of 1K to 64K
//! slots with random keys, the first `Full` came with 69-86% of the slots
//! in use, against 34-68% with 16 slots probed linearly from one position
//! (the larger the table, the earlier).
//!
//! Partitions. The extension may split its region into P partitions, each
//! under its own lock (`partition_span`), and pick one by the key
//! (`partition_of`, from a third word of the digest, so the keys of one
//! partition still spread over all of its sets). A `ReplayTable` is one
//! partition's bytes.
//!
//! Memory bound and capacity: `SLOT_BYTES` per slot, so 1 MiB holds 26,208
//! slots. An entry holds its slot until `expires` = iat + max_age + leeway,
//! and an `iat` may lie up to max_ahead in the future, so for at most
//! W = max_age + max_ahead + leeway seconds (65 s by `ProofPolicy`'s
//! defaults with no leeway). A steady rate of R proofs per second keeps
//! about R * W slots in use: the table is entirely full at R = slots / W
//! (26,208 / 65 = 403 proofs per second), and `Full` begins before that,
//! since a key has only its two sets. Simulated (8,192 slots, each entry
//! live 60 s, a steady rate), the share of proofs refused as `Full` was
//! none at 60% of slots / W, 0.1% at 70%, 2% at 80% and 12% at 100%. Size
//! the table for the peak rate at no more than 60% of slots / W: about 240
//! proofs per second per MiB with a 65 s window.
//!
//! Uses only the leaf `fingerprint` (SHA-256).

use std::ops::Range;

use crate::fingerprint::parts_digest;

/// A key: SHA-256 of a proof key's thumbprint and the proof's `jti`
/// (`replay_key`). Its bytes are uniformly distributed, which is what
/// picking a partition and sets from them relies on.
pub type ReplayKey = [u8; 32];

/// Bytes of one slot: the key (32) and its expiry (8).
pub const SLOT_BYTES: usize = 40;
/// Slots per set. A key may live in two sets, so an operation reads at most
/// `2 * WAYS` slots.
pub const WAYS: usize = 8;
/// Bytes of one set.
pub const SET_BYTES: usize = SLOT_BYTES * WAYS;

const KEY: Range<usize> = 0..32;
const EXPIRES: Range<usize> = 32..40;

/// What `insert_if_new` did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key was not present: it is now, until its expiry. Accept the proof.
    Recorded,
    /// The key is present and unexpired: this proof was used before. Refuse it.
    Replay,
    /// Both of the key's sets hold only unexpired entries, and none is
    /// evicted to make room (see the module's FAIL CLOSED). Nothing was
    /// recorded. Refuse the proof.
    Full,
}

/// The key a proof is recorded under: SHA-256 of its key's thumbprint and
/// its `jti`, each preceded by its length, after a label naming this use.
/// The lengths keep ("ab", "c") and ("a", "bc") apart; a separator character
/// would not, since a `jti` may contain any character.
pub fn replay_key(jkt: &str, jti: &str) -> ReplayKey {
    parts_digest(&[b"jwt_rls dpop replay", jkt.as_bytes(), jti.as_bytes()])
}

/// Bytes for a table of `slots` slots, rounded up to whole sets.
pub const fn bytes_for(slots: usize) -> usize {
    bytes_for_sets(slots, SET_BYTES)
}

/// Slots a table of `bytes` bytes holds: whole sets only (the bytes past the
/// last whole set are not used).
pub const fn slots_in(bytes: usize) -> usize {
    slots_in_sets(bytes, SET_BYTES)
}

/// The partition (of `partitions`, 0 taken as 1) a key belongs to; any
/// 32-byte digest (`replay_quota`'s owners too).
pub fn partition_of(key: &[u8; 32], partitions: usize) -> usize {
    (word(key, 0) % partitions.max(1) as u64) as usize
}

/// The bytes of partition `index` in a region of `region_bytes` bytes split
/// into `partitions` (0 taken as 1): equal runs of whole sets, one after the
/// other from the region's start. Panics if `index` is not below
/// `partitions`.
pub fn partition_span(region_bytes: usize, partitions: usize, index: usize) -> Range<usize> {
    partition_span_of_sets(region_bytes, partitions, index, SET_BYTES)
}

// The layout of a table of sets of WAYS slots each, whatever a slot's size:
// shared with `replay_quota`, whose slots are larger.

/// Bytes for `slots` slots in whole sets of `set_bytes`.
pub(crate) const fn bytes_for_sets(slots: usize, set_bytes: usize) -> usize {
    slots.div_ceil(WAYS) * set_bytes
}

/// Slots in the whole sets of `set_bytes` that `bytes` bytes hold.
pub(crate) const fn slots_in_sets(bytes: usize, set_bytes: usize) -> usize {
    bytes / set_bytes * WAYS
}

/// `partition_span` for sets of `set_bytes`.
pub(crate) fn partition_span_of_sets(
    region_bytes: usize,
    partitions: usize,
    index: usize,
    set_bytes: usize,
) -> Range<usize> {
    let partitions = partitions.max(1);
    assert!(index < partitions, "partition {index} of {partitions}");
    let each = bytes_for_sets(
        slots_in_sets(region_bytes / partitions, set_bytes),
        set_bytes,
    );
    index * each..(index + 1) * each
}

/// The two sets (of `sets`) a 32-byte digest may live in, from its words 1
/// and 2 (the same one twice in a one-set table); None without a set.
pub(crate) fn two_sets(key: &[u8; 32], sets: usize) -> Option<[usize; 2]> {
    let n = sets as u64;
    (n > 0).then(|| [(word(key, 1) % n) as usize, (word(key, 2) % n) as usize])
}

/// Word `i` (0 to 3) of a key, little-endian: 0 picks the partition, 1 and 2
/// the two sets, independently since the key is a digest.
fn word(key: &[u8; 32], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&key[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// A replay table over a byte slice (one partition of the region): `&[u8]`
/// to count, `&mut [u8]` to insert. The caller holds the partition's lock
/// for as long as it holds the table.
pub struct ReplayTable<B> {
    bytes: B,
}

impl<B: AsRef<[u8]>> ReplayTable<B> {
    /// The table in `bytes`, as it stands (zeroed bytes are an empty table).
    /// Only whole sets are used; fewer than `SET_BYTES` bytes make a table
    /// with no room, where every insertion is `Full`.
    pub fn from_bytes(bytes: B) -> ReplayTable<B> {
        ReplayTable { bytes }
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        slots_in(self.bytes.as_ref().len())
    }

    /// Entries in use at `now`: recorded and not yet expired.
    pub fn count_live(&self, now: i64) -> usize {
        (0..self.slots())
            .filter(|&s| live(self.slot(s), now).is_some())
            .count()
    }

    fn slot(&self, s: usize) -> &[u8] {
        &self.bytes.as_ref()[s * SLOT_BYTES..(s + 1) * SLOT_BYTES]
    }

    /// The key's two candidate sets (the same one twice in a one-set table);
    /// None when the table has no set.
    fn sets(&self, key: &ReplayKey) -> Option<[usize; 2]> {
        two_sets(key, self.slots() / WAYS)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ReplayTable<B> {
    /// Records `key` until `expires` (Unix seconds, inclusive: the entry is
    /// live while `now <= expires`) unless it is already recorded and
    /// unexpired at `now`. See `Outcome` for what each answer means.
    ///
    /// Never evicts an unexpired entry: with no free slot in either of the
    /// key's sets the answer is `Full` and the caller must refuse the proof.
    /// An `expires` already before `now` is stored, and is free space at
    /// once: such a proof is outside its window, and `verify_proof` refuses
    /// it anyway. That holds when `now` is the one `verify_proof` was given
    /// and `expires` is at least the proof's `iat + max_age`: an entry then
    /// outlives every moment its proof verifies.
    pub fn insert_if_new(&mut self, key: &ReplayKey, expires: i64, now: i64) -> Outcome {
        let Some([a, b]) = self.sets(key) else {
            return Outcome::Full;
        };
        // The free slot chosen so far, and how many free slots its set has.
        let mut best: Option<(usize, usize)> = None;
        // Both sets are read to the end before anything is written: the key
        // may sit in either, after a free slot.
        let distinct = if a == b { 1 } else { 2 };
        for &set in &[a, b][..distinct] {
            let mut first_free = None;
            let mut free = 0;
            for s in set * WAYS..(set + 1) * WAYS {
                match live(self.slot(s), now) {
                    Some(k) if k == key => return Outcome::Replay,
                    Some(_) => {}
                    None => {
                        free += 1;
                        first_free.get_or_insert(s);
                    }
                }
            }
            if let Some(s) = first_free {
                if best.is_none_or(|(_, most)| free > most) {
                    best = Some((s, free));
                }
            }
        }
        let Some((s, _)) = best else {
            return Outcome::Full;
        };
        let slot = &mut self.bytes.as_mut()[s * SLOT_BYTES..(s + 1) * SLOT_BYTES];
        slot[KEY].copy_from_slice(key);
        slot[EXPIRES].copy_from_slice(&expires.to_le_bytes());
        Outcome::Recorded
    }
}

/// A slot's key if it holds an unexpired entry at `now`; None when it is
/// free (never used, expiry 0, or expired).
fn live(slot: &[u8], now: i64) -> Option<&[u8]> {
    let mut e = [0u8; 8];
    e.copy_from_slice(&slot[EXPIRES]);
    let expires = i64::from_le_bytes(e);
    (expires != 0 && expires >= now).then(|| &slot[KEY])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::token_digest;

    const NOW: i64 = 1_796_256_000; // 2026-12-03

    /// Distinct keys, uniformly distributed like real ones.
    fn key(i: usize) -> ReplayKey {
        token_digest(&format!("key {i}"))
    }

    fn table(slots: usize) -> ReplayTable<Vec<u8>> {
        ReplayTable::from_bytes(vec![0u8; bytes_for(slots)])
    }

    #[test]
    fn replay_new_key_is_recorded_and_again_is_replay() {
        let mut t = table(64);
        assert_eq!(t.insert_if_new(&key(1), NOW + 60, NOW), Outcome::Recorded);
        assert_eq!(
            t.insert_if_new(&key(1), NOW + 60, NOW + 10),
            Outcome::Replay
        );
        assert_eq!(
            t.insert_if_new(&key(2), NOW + 60, NOW + 10),
            Outcome::Recorded
        );
        assert_eq!(t.count_live(NOW + 10), 2);
    }

    #[test]
    fn replay_after_expiry_the_key_is_recorded_again() {
        let mut t = table(64);
        assert_eq!(t.insert_if_new(&key(1), NOW + 60, NOW), Outcome::Recorded);
        // Live up to and including its expiry: verify_proof accepts an iat
        // exactly max_age old.
        assert_eq!(
            t.insert_if_new(&key(1), NOW + 120, NOW + 60),
            Outcome::Replay
        );
        assert_eq!(
            t.insert_if_new(&key(1), NOW + 121, NOW + 61),
            Outcome::Recorded
        );
        assert_eq!(
            t.insert_if_new(&key(1), NOW + 121, NOW + 62),
            Outcome::Replay
        );
        assert_eq!(t.count_live(NOW + 62), 1, "the expired copy is free space");
    }

    #[test]
    fn replay_full_sets_refuse_and_evict_nothing() {
        // One set: every key's two choices are its 8 slots.
        let mut t = table(WAYS);
        for i in 0..WAYS {
            assert_eq!(t.insert_if_new(&key(i), NOW + 60, NOW), Outcome::Recorded);
        }
        assert_eq!(t.insert_if_new(&key(100), NOW + 60, NOW), Outcome::Full);
        assert_eq!(t.insert_if_new(&key(100), NOW + 60, NOW + 1), Outcome::Full);
        // Every entry is still there, and the refused key was not recorded.
        for i in 0..WAYS {
            assert_eq!(t.insert_if_new(&key(i), NOW + 60, NOW + 1), Outcome::Replay);
        }
        assert_eq!(t.count_live(NOW + 60), WAYS);
    }

    #[test]
    fn replay_expired_entries_are_reused() {
        let mut t = table(WAYS);
        for i in 0..WAYS {
            // Key i expires at NOW + i.
            assert_eq!(
                t.insert_if_new(&key(i), NOW + i as i64, NOW),
                Outcome::Recorded
            );
        }
        assert_eq!(t.insert_if_new(&key(100), NOW + 60, NOW), Outcome::Full);
        // At NOW + 2 keys 0 and 1 have expired: two new keys fit, not three.
        assert_eq!(
            t.insert_if_new(&key(100), NOW + 60, NOW + 2),
            Outcome::Recorded
        );
        assert_eq!(
            t.insert_if_new(&key(101), NOW + 60, NOW + 2),
            Outcome::Recorded
        );
        assert_eq!(t.insert_if_new(&key(102), NOW + 60, NOW + 2), Outcome::Full);
        for i in 2..WAYS {
            assert_eq!(t.insert_if_new(&key(i), NOW + 60, NOW + 2), Outcome::Replay);
        }
        assert_eq!(t.count_live(NOW + 2), WAYS);
    }

    #[test]
    fn replay_a_key_behind_free_slots_is_still_found() {
        // Two sets. Eight keys whose both choices are set 0 fill it; a key
        // that may go to set 0 or 1 then goes to set 1. Once set 0 has
        // expired, its free slots come first in that key's search, which
        // must go on to set 1 and find it.
        let mut t = table(2 * WAYS);
        let candidates = |want: [usize; 2]| {
            (0..).map(key).filter(move |k| {
                ReplayTable::from_bytes([0u8; 2 * SET_BYTES]).sets(k) == Some(want)
            })
        };
        for k in candidates([0, 0]).take(WAYS) {
            assert_eq!(t.insert_if_new(&k, NOW + 1, NOW), Outcome::Recorded);
        }
        let late = candidates([0, 1]).next().unwrap();
        assert_eq!(t.insert_if_new(&late, NOW + 60, NOW), Outcome::Recorded);
        assert_eq!(t.insert_if_new(&late, NOW + 60, NOW + 2), Outcome::Replay);
        // The same within a set: in a one-set table the last key recorded
        // sits behind the seven that expired.
        let mut t = table(WAYS);
        for i in 0..WAYS {
            let expires = if i == WAYS - 1 { NOW + 60 } else { NOW + 1 };
            assert_eq!(t.insert_if_new(&key(i), expires, NOW), Outcome::Recorded);
        }
        assert_eq!(
            t.insert_if_new(&key(WAYS - 1), NOW + 60, NOW + 2),
            Outcome::Replay
        );
    }

    #[test]
    fn replay_zeroed_bytes_are_an_empty_table() {
        let mut bytes = vec![0u8; bytes_for(1024)];
        let t = ReplayTable::from_bytes(&bytes[..]);
        assert_eq!(t.slots(), 1024);
        for now in [i64::MIN, -1, 0, 1, NOW, i64::MAX] {
            assert_eq!(t.count_live(now), 0, "at {now}");
        }
        // Even the all-zero key is not taken for a recorded one.
        let mut t = ReplayTable::from_bytes(&mut bytes[..]);
        assert_eq!(
            t.insert_if_new(&[0u8; 32], NOW + 60, NOW),
            Outcome::Recorded
        );
        assert_eq!(t.insert_if_new(&[0u8; 32], NOW + 60, NOW), Outcome::Replay);
    }

    #[test]
    fn replay_table_with_no_whole_set_is_always_full() {
        let mut t = ReplayTable::from_bytes(vec![0u8; SET_BYTES - 1]);
        assert_eq!(t.slots(), 0);
        assert_eq!(t.insert_if_new(&key(1), NOW + 60, NOW), Outcome::Full);
    }

    #[test]
    fn replay_layout_is_key_then_little_endian_expiry() {
        let mut bytes = vec![0u8; SET_BYTES];
        let mut t = ReplayTable::from_bytes(&mut bytes[..]);
        assert_eq!(
            t.insert_if_new(&key(7), 0x0102_0304_0506_0708, NOW),
            Outcome::Recorded
        );
        let slot = bytes
            .chunks(SLOT_BYTES)
            .find(|s| s != &[0u8; SLOT_BYTES])
            .unwrap();
        assert_eq!(&slot[..32], &key(7));
        assert_eq!(&slot[32..], &[8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn replay_sizes_round_trip() {
        assert_eq!(SLOT_BYTES, 40);
        for slots in 0..200 {
            let bytes = bytes_for(slots);
            assert_eq!(bytes % SET_BYTES, 0);
            let fits = slots_in(bytes);
            assert!(fits >= slots && fits < slots + WAYS, "{slots} -> {fits}");
            if slots % WAYS == 0 {
                assert_eq!(fits, slots);
            }
        }
        for bytes in 0..5 * SET_BYTES {
            let slots = slots_in(bytes);
            assert!(bytes_for(slots) <= bytes && bytes < bytes_for(slots) + SET_BYTES);
        }
        assert_eq!(slots_in(1 << 20), 26_208, "the module's doc quotes this");
    }

    #[test]
    fn replay_partition_of_is_in_range_and_spreads_keys() {
        let mut counts = [0usize; 8];
        for i in 0..10_000 {
            counts[partition_of(&key(i), 8)] += 1;
        }
        for (p, &n) in counts.iter().enumerate() {
            assert!((1000..=1500).contains(&n), "partition {p} got {n} of 10000");
        }
        for partitions in [0, 1, 3, 16] {
            for i in 0..100 {
                assert!(partition_of(&key(i), partitions) < partitions.max(1));
            }
        }
    }

    #[test]
    fn replay_partition_spans_are_disjoint_whole_sets_within_the_region() {
        let region = 1 << 20;
        let spans: Vec<_> = (0..7).map(|p| partition_span(region, 7, p)).collect();
        for (p, span) in spans.iter().enumerate() {
            assert_eq!(span.len() % SET_BYTES, 0);
            assert!(span.len() > region / 7 - SET_BYTES);
            assert!(span.end <= region);
            if p > 0 {
                assert_eq!(span.start, spans[p - 1].end);
            }
        }
        assert_eq!(partition_span(region, 0, 0), partition_span(region, 1, 0));
    }

    #[test]
    fn replay_many_keys_of_one_partition_are_all_recorded_then_replays() {
        // Keys of one partition of 8, as the extension routes them: the sets
        // must not depend on the partition's bits, or they would crowd into
        // a few sets and turn Full early.
        let keys: Vec<_> = (0..)
            .map(key)
            .filter(|k| partition_of(k, 8) == 3)
            .take(2048)
            .collect();
        let mut t = table(4096);
        for k in &keys {
            assert_eq!(t.insert_if_new(k, NOW + 60, NOW), Outcome::Recorded);
        }
        assert_eq!(t.count_live(NOW), 2048);
        for k in &keys {
            assert_eq!(t.insert_if_new(k, NOW + 60, NOW + 30), Outcome::Replay);
        }
        assert_eq!(t.count_live(NOW + 61), 0);
    }

    #[test]
    fn replay_keys_of_one_partition_reach_every_set_by_either_choice() {
        // The partition's word is not a set's: keys of one partition of 8
        // find each of 64 sets as their first choice, and as their second.
        let t = table(64 * WAYS);
        let mut first = [false; 64];
        let mut second = [false; 64];
        for k in (0..20_000).map(key).filter(|k| partition_of(k, 8) == 3) {
            let [a, b] = t.sets(&k).unwrap();
            first[a] = true;
            second[b] = true;
        }
        assert!(first.iter().all(|&hit| hit), "first choices: {first:?}");
        assert!(second.iter().all(|&hit| hit), "second choices: {second:?}");
    }

    #[test]
    fn replay_two_choices_fill_most_slots_before_the_first_full() {
        // The module's doc says a table fills to about 70% before its first
        // Full; one set per key (or 16 slots probed linearly) was Full from
        // about 40%. With one key more than there are slots, a table that
        // evicts nothing must be Full at some point.
        let mut t = table(4096);
        let recorded = (0..=4096)
            .take_while(|&i| t.insert_if_new(&key(i), NOW + 60, NOW) == Outcome::Recorded)
            .count();
        assert!(recorded <= 4096, "never Full: an entry was evicted");
        assert!(
            recorded * 100 >= 4096 * 65,
            "first Full at {recorded} of 4096"
        );
    }

    #[test]
    fn replay_key_keeps_the_jkt_jti_boundary() {
        assert_ne!(replay_key("ab", "c"), replay_key("a", "bc"));
        assert_ne!(replay_key("", "abc"), replay_key("abc", ""));
        assert_eq!(replay_key("jkt", "jti"), replay_key("jkt", "jti"));
        assert_ne!(replay_key("jkt", "jti"), replay_key("jkt", "jti2"));
    }
}
