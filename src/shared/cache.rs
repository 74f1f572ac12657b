//! The verification cache shared by every backend (jwt_rls in
//! shared_preload_libraries, `jwt_rls.shared_cache_entries` slots).
//!
//! Behind a pooler a user's requests land on any server connection, so a
//! per-backend cache verifies each token once per connection. Here a
//! verification made by one backend is found by all.
//!
//! What an entry may answer, and why it is safe:
//! - It is found by the SHA-256 of the token, so it answers for exactly the
//!   token that was verified.
//! - It says "this payload was signed (and decrypted) by the key with this
//!   fingerprint, and passed the policy with this fingerprint". A backend
//!   uses it only when the key it holds now under that kid has the same
//!   fingerprint (so a changed, removed, disabled or expired key refuses it:
//!   `verification` checks the key as it does for its own cache), and under the
//!   same policy. Time claims and revocations are re-checked at every use,
//!   as for the per-backend cache. Nothing in it is trusted beyond that.
//! - It may also hold the claims as jsonb (Postgres's binary form of the
//!   payload, which authenticate() and jwt_claims() return): the first
//!   backend to build it adds it (`attach`), so that the others copy it
//!   instead of parsing the payload again. It is a function of the payload
//!   alone, and is used only with the entry it belongs to.
//!
//! Concurrency, without a lock on the hit path: each slot is a seqlock. A
//! writer claims a slot by moving its sequence number from even to odd
//! (compare-and-swap), writes, and makes it even again; a reader copies the
//! slot and keeps the copy only if the sequence number was even and
//! unchanged around the copy. A writer killed midway leaves its slot odd:
//! readers and writers skip it, and nothing waits (the postmaster also
//! reinitialises shared memory after such a crash). All fields are atomics,
//! so concurrent access is defined behaviour.
//!
//! Each slot has a tag beside it, in an array of its own after the slots:
//! a word of its token's digest (one the choice of sets does not use). A
//! lookup reads its sets' tags, 2 cache lines each, and opens only a slot
//! whose tag matches; scanning the slots themselves (over 2 kB apart)
//! touched a cache line per slot, measured at 1.4 µs of a pooled
//! transaction's bind. A tag is only a hint: the slot's whole digest is
//! checked under its sequence number, so a stale tag costs a miss at most.
//!
//! Slots are grouped in sets of WAYS (16). A token may live in either of
//! two sets, chosen by two independent parts of its digest ("two choices"):
//! it takes an empty slot in the emptier of the two, or else replaces the
//! least recently used slot of the two. With one set per token, the fullest sets overflowed
//! while others had room, and their tokens evicted each other and were
//! verified again and again (1.09-1.17 signature checks per token with
//! 2,000 tokens in 4,096 slots); with two choices, sets fill evenly and a
//! token is only evicted when all 32 of its slots are in use (measured:
//! 1.00 signature checks per token in the same workload).

use std::sync::atomic::{fence, AtomicU64, Ordering};

use jwt_rls_core::cache::Fingerprint;
use jwt_rls_core::Times;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::counters::{self, Counter};
use crate::pg::region::Region;

/// This part's region of the shared segment: the slots, then their tags.
pub static REGION: Region = Region::new();

/// Slots of the shared verification cache (0 turns it off).
static ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(4096);

/// Defines `jwt_rls.shared_cache_entries`. Called from _PG_init while
/// shared_preload_libraries are loaded, before the segment is sized.
pub fn init() {
    GucRegistry::define_int_guc(
        c"jwt_rls.shared_cache_entries",
        c"Verified tokens kept in shared memory for every backend (0 turns the shared cache off).",
        c"Needs jwt_rls in shared_preload_libraries; each entry takes about 2.2 kB; rounded down to a multiple of 16.",
        &ENTRIES,
        0,
        1_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// Bytes this part asks of the segment: `jwt_rls.shared_cache_entries`
/// slots (rounded to whole sets) and their tags.
pub fn shared_bytes() -> usize {
    bytes_for(slots_for(ENTRIES.get().max(0) as usize))
}

/// Slots per set; a token may live in two sets.
const WAYS: usize = 16;
/// Bytes of an entry's data: its texts (algorithm, kid, decryption kid and
/// payload) and, from the next whole word, the claims' encoding when it
/// fits. Tokens whose texts do not fit are verified per backend only.
const DATA_WORDS: usize = 256;
/// Bits of each length in `meta`: enough for DATA_WORDS * 8 bytes.
const LEN_BITS: u32 = 12;
const _: () = assert!(DATA_WORDS * 8 < 1 << LEN_BITS);
// Slots fill whole cache lines, so the tags after them start on one and a
// set's 16 tags take exactly two.
const _: () = assert!(std::mem::size_of::<Slot>().is_multiple_of(64));

#[repr(C)]
struct Slot {
    /// 0: never used; odd: being written; even: stable.
    seq: AtomicU64,
    digest: [AtomicU64; 4],
    key_fp: [AtomicU64; 2],
    dkey_fp: [AtomicU64; 2],
    policy_fp: [AtomicU64; 2],
    exp: AtomicU64,
    nbf: AtomicU64,
    iat: AtomicU64,
    /// Lengths and flags, see `pack`.
    meta: AtomicU64,
    /// Microseconds since the epoch of the last use, for replacement.
    used: AtomicU64,
    data: [AtomicU64; DATA_WORDS],
}

/// A verification as it is shared.
pub struct Entry {
    pub payload: String,
    pub kid: String,
    pub alg: String,
    pub decryption_kid: Option<String>,
    pub times: Times,
    pub key_fp: Fingerprint,
    pub decryption_key_fp: Fingerprint,
    pub policy_fp: Fingerprint,
    /// The claims as the holder encodes them (jsonb); empty when not
    /// (yet) kept.
    pub encoded: Vec<u8>,
}

pub fn slots_for(entries: usize) -> usize {
    if entries == 0 {
        0
    } else {
        entries.max(WAYS) / WAYS * WAYS
    }
}

/// Bytes of shared memory for `slots` slots and their tags.
pub fn bytes_for(slots: usize) -> usize {
    slots * (std::mem::size_of::<Slot>() + std::mem::size_of::<AtomicU64>())
}

fn slots() -> &'static [Slot] {
    match REGION.base() {
        // SAFETY: the region holds `bytes_for(n)` zeroed bytes, 64-byte
        // aligned, for as long as the server runs: n Slots (all-zero is a
        // valid, empty Slot of atomics), then their tags.
        Some(base) => unsafe {
            std::slice::from_raw_parts(base as *const Slot, REGION.len() / bytes_for(1))
        },
        None => &[],
    }
}

/// The slots' tags, `tags()[i]` for `slots()[i]`: right after the slots.
fn tags() -> &'static [AtomicU64] {
    let all = slots();
    // SAFETY: the segment holds one zeroed AtomicU64 per slot right after
    // the slots (`bytes_for`), 8-byte aligned since a Slot's size is a
    // multiple of 8, for as long as the server runs.
    unsafe { std::slice::from_raw_parts(all.as_ptr_range().end as *const AtomicU64, all.len()) }
}

pub fn enabled() -> bool {
    !slots().is_empty()
}

/// (slots, slots in use, bytes) of the shared cache; zeros without one.
pub fn usage() -> (usize, usize, usize) {
    let all = slots();
    let used = all
        .iter()
        .filter(|s| s.seq.load(Ordering::Relaxed) != 0)
        .count();
    (all.len(), used, bytes_for(all.len()))
}

/// A set of slots and their tags.
#[derive(Clone, Copy)]
struct Set {
    slots: &'static [Slot],
    tags: &'static [AtomicU64],
}

/// The sets a token may live in: two (one when there is only one set).
/// The digest is SHA-256, so its words are independent: the first two
/// choose the sets, the third is the tag.
fn sets_of(digest: &[u8; 32]) -> (Set, Option<Set>) {
    let (all, tags) = (slots(), tags());
    let sets = (all.len() / WAYS) as u64;
    let [h1, h2, ..] = words::<4>(digest);
    let first = h1 % sets;
    let mut second = h2 % sets;
    if second == first {
        second = (first + 1) % sets;
    }
    let set = |i: u64| {
        let range = i as usize * WAYS..(i as usize + 1) * WAYS;
        Set {
            slots: &all[range.clone()],
            tags: &tags[range],
        }
    };
    (set(first), (second != first).then(|| set(second)))
}

/// A token's tag: the word of its digest that `sets_of` does not use.
fn tag_of(want: &[u64; 4]) -> u64 {
    want[2]
}

/// The slots a token may live in, with their tags, its first set's first:
/// the order in which `get` looks.
fn candidates(digest: &[u8; 32]) -> impl Iterator<Item = (&'static Slot, &'static AtomicU64)> {
    let (first, second) = sets_of(digest);
    [Some(first), second]
        .into_iter()
        .flatten()
        .flat_map(|set| set.slots.iter().zip(set.tags))
}

/// The candidate slots whose tag is the token's: the only ones that may
/// hold its entry (each is still checked by its whole digest).
fn tagged(digest: &[u8; 32], want: &[u64; 4]) -> impl Iterator<Item = &'static Slot> {
    let tag = tag_of(want);
    candidates(digest)
        .filter(move |(_, t)| t.load(Ordering::Relaxed) == tag)
        .map(|(slot, _)| slot)
}

fn empty_slots(set: Set) -> usize {
    set.slots
        .iter()
        .filter(|s| s.seq.load(Ordering::Relaxed) == 0)
        .count()
}

/// Up to 8 bytes as a little-endian word, zero-padded.
fn word(chunk: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(b)
}

fn words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (w, chunk) in out.iter_mut().zip(bytes.chunks(8)) {
        *w = word(chunk);
    }
    out
}

fn bytes_of<const N: usize, const M: usize>(w: &[u64; N]) -> [u8; M] {
    let mut out = [0u8; M];
    for (chunk, word) in out.chunks_mut(8).zip(w) {
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn load<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].load(Ordering::Relaxed))
}

fn store<const N: usize>(a: &[AtomicU64; N], v: [u64; N]) {
    for (slot, value) in a.iter().zip(v) {
        slot.store(value, Ordering::Relaxed);
    }
}

/// The lengths of an entry's parts, in the order they are stored.
#[derive(Clone, Copy)]
struct Lengths {
    alg: usize,
    kid: usize,
    dkid: usize,
    payload: usize,
    encoded: usize,
}

impl Lengths {
    fn texts(&self) -> usize {
        self.alg + self.kid + self.dkid + self.payload
    }

    /// Where the encoding starts: the word after the texts.
    fn encoded_word(&self) -> usize {
        self.texts().div_ceil(8)
    }

    /// Words of data in use.
    fn words(&self) -> usize {
        if self.encoded == 0 {
            self.encoded_word()
        } else {
            self.encoded_word() + self.encoded.div_ceil(8)
        }
    }
}

/// Which optional parts an entry has.
#[derive(Clone, Copy)]
struct Flags {
    nbf: bool,
    iat: bool,
    dkid: bool,
}

/// Lengths and flags in one word: five lengths of LEN_BITS each (alg, kid,
/// decryption kid, payload, encoding), then has-nbf, has-iat,
/// has-decryption-kid.
fn pack(l: Lengths, f: Flags) -> u64 {
    let mut m = 0u64;
    debug_assert!(l.words() <= DATA_WORDS, "lengths are bounded by the slot");
    for (i, n) in [l.alg, l.kid, l.dkid, l.payload, l.encoded]
        .into_iter()
        .enumerate()
    {
        m |= (n as u64) << (i as u32 * LEN_BITS);
    }
    let at = 5 * LEN_BITS;
    m | u64::from(f.nbf) << at | u64::from(f.iat) << (at + 1) | u64::from(f.dkid) << (at + 2)
}

fn unpack(m: u64) -> (Lengths, Flags) {
    let len = |i: u32| (m >> (i * LEN_BITS) & ((1 << LEN_BITS) - 1)) as usize;
    let at = 5 * LEN_BITS;
    let lengths = Lengths {
        alg: len(0),
        kid: len(1),
        dkid: len(2),
        payload: len(3),
        encoded: len(4),
    };
    let flags = Flags {
        nbf: m >> at & 1 == 1,
        iat: m >> (at + 1) & 1 == 1,
        dkid: m >> (at + 2) & 1 == 1,
    };
    (lengths, flags)
}

/// Writes `bytes` into the slot's data from word `at` on.
fn store_data(slot: &Slot, at: usize, bytes: &[u8]) {
    for (w, chunk) in slot.data[at..].iter().zip(bytes.chunks(8)) {
        w.store(word(chunk), Ordering::Relaxed);
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How often `get` reads a slot again that was being written or changed
/// while it copied it: a backend adding the claims' encoding to an entry
/// (`attach`) rewrites it in well under a microsecond, and a miss would
/// cost a signature check and a second copy of the entry. A slot left
/// half-written by a backend that died costs three reads.
const READ_ATTEMPTS: usize = 3;

/// The entry for a token digest, if a stable slot holds it.
pub fn get(digest: &[u8; 32]) -> Option<Entry> {
    if !enabled() {
        return None;
    }
    let want = words::<4>(digest);
    tagged(digest, &want)
        .find_map(|slot| (0..READ_ATTEMPTS).find_map(|_| read(slot, &want)).flatten())
}

/// One attempt at reading `slot` for the token with digest words `want`:
/// Some(entry) or Some(None) when the answer is settled (the entry, or not
/// this token's slot), None when the slot was being written or changed
/// during the copy.
fn read(slot: &Slot, want: &[u64; 4]) -> Option<Option<Entry>> {
    let before = slot.seq.load(Ordering::Acquire);
    if before & 1 == 1 {
        // Being written (or left so by a writer that died): try again.
        std::hint::spin_loop();
        return None;
    }
    if before == 0 || load(&slot.digest) != *want {
        return Some(None);
    }
    let key_fp = load(&slot.key_fp);
    let dkey_fp = load(&slot.dkey_fp);
    let policy_fp = load(&slot.policy_fp);
    let (exp, nbf, iat) = (
        slot.exp.load(Ordering::Relaxed),
        slot.nbf.load(Ordering::Relaxed),
        slot.iat.load(Ordering::Relaxed),
    );
    let (lens, flags) = unpack(slot.meta.load(Ordering::Relaxed));
    // Only the words in use are copied (a typical entry uses a fifth of the
    // slot). The lengths may be torn by a concurrent writer: they are
    // bounded here and the copy is dropped below if it was.
    let used = lens.words().min(DATA_WORDS);
    let mut bytes = Vec::with_capacity(used * 8);
    for w in &slot.data[..used] {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    fence(Ordering::Acquire);
    if slot.seq.load(Ordering::Relaxed) != before {
        return None;
    }
    // A consistent copy; now decode it (lengths were written by a writer of
    // this code, but are checked anyway).
    if lens.words() > used {
        return Some(None);
    }
    let mut at = 0;
    let mut next = |n: usize| {
        let s = std::str::from_utf8(&bytes[at..at + n]).ok();
        at += n;
        s
    };
    let (Some(alg), Some(kid), Some(dkid), Some(payload)) = (
        next(lens.alg),
        next(lens.kid),
        next(lens.dkid),
        next(lens.payload),
    ) else {
        return Some(None);
    };
    let from = lens.encoded_word() * 8;
    let entry = Entry {
        payload: payload.to_string(),
        kid: kid.to_string(),
        alg: alg.to_string(),
        decryption_kid: flags.dkid.then(|| dkid.to_string()),
        times: Times {
            exp: exp as i64,
            nbf: flags.nbf.then_some(nbf as i64),
            iat: flags.iat.then_some(iat as i64),
        },
        key_fp: bytes_of::<2, 16>(&key_fp),
        decryption_key_fp: bytes_of::<2, 16>(&dkey_fp),
        policy_fp: bytes_of::<2, 16>(&policy_fp),
        encoded: bytes[from.min(bytes.len())..(from + lens.encoded).min(bytes.len())].to_vec(),
    };
    slot.used.store(now_micros(), Ordering::Relaxed);
    Some(Some(entry))
}

/// Stores an entry for a token digest: in this token's own slot if it has
/// one (the copy `get` finds first, should two backends have stored it at
/// once), else an empty slot of the emptier of its two sets (so that sets
/// fill evenly), else the least recently used stable slot of the two. Gives
/// up rather than wait when the chosen slot changes under it, or when
/// another backend is writing this token's entry; true when stored.
pub fn put(digest: &[u8; 32], e: &Entry) -> bool {
    if !enabled() {
        return false;
    }
    let dkid = e.decryption_kid.as_deref().unwrap_or("");
    let mut lens = Lengths {
        alg: e.alg.len(),
        kid: e.kid.len(),
        dkid: dkid.len(),
        payload: e.payload.len(),
        encoded: e.encoded.len(),
    };
    if lens.texts() > DATA_WORDS * 8 {
        return false;
    }
    if lens.words() > DATA_WORDS {
        lens.encoded = 0; // kept without it
    }
    let want = words::<4>(digest);
    let second_emptier = match sets_of(digest) {
        (first, Some(second)) => empty_slots(second) > empty_slots(first),
        _ => false,
    };
    let mut busy = false;
    let victim = candidates(digest)
        .enumerate()
        .map(|(i, (s, tag))| (i, s, tag, s.seq.load(Ordering::Relaxed)))
        .filter(|&(_, s, _, seq)| {
            let writing = seq & 1 == 1;
            busy |= writing && load(&s.digest) == want;
            !writing
        })
        .min_by_key(|&(i, s, _, seq)| {
            let mine = seq != 0 && load(&s.digest) == want;
            let in_emptier = (i >= WAYS) == second_emptier;
            let rank = if mine {
                0 // ties: min_by_key keeps the first, as get() does
            } else if seq == 0 {
                u64::from(!in_emptier)
            } else {
                s.used.load(Ordering::Relaxed)
            };
            (!mine, seq != 0, rank)
        });
    if busy {
        return false; // another backend is writing this token's entry
    }
    let Some((_, slot, tag, seq)) = victim else {
        return false;
    };
    // Claim the slot as it was when chosen: if another backend wrote it
    // since, leave its entry alone.
    if slot
        .seq
        .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // The odd sequence number must be visible before any of the writes
    // below (a reader that sees new data must see the slot as busy): on
    // weakly ordered CPUs (ARM) the Acquire of the claim alone does not
    // order later stores after it.
    fence(Ordering::Release);
    store(&slot.digest, want);
    tag.store(tag_of(&want), Ordering::Relaxed);
    store(&slot.key_fp, words::<2>(&e.key_fp));
    store(&slot.dkey_fp, words::<2>(&e.decryption_key_fp));
    store(&slot.policy_fp, words::<2>(&e.policy_fp));
    slot.exp.store(e.times.exp as u64, Ordering::Relaxed);
    slot.nbf
        .store(e.times.nbf.unwrap_or(0) as u64, Ordering::Relaxed);
    slot.iat
        .store(e.times.iat.unwrap_or(0) as u64, Ordering::Relaxed);
    let flags = Flags {
        nbf: e.times.nbf.is_some(),
        iat: e.times.iat.is_some(),
        dkid: e.decryption_kid.is_some(),
    };
    slot.meta.store(pack(lens, flags), Ordering::Relaxed);
    let texts = [
        e.alg.as_bytes(),
        e.kid.as_bytes(),
        dkid.as_bytes(),
        e.payload.as_bytes(),
    ]
    .concat();
    store_data(slot, 0, &texts);
    store_data(slot, lens.encoded_word(), &e.encoded[..lens.encoded]);
    slot.used.store(now_micros(), Ordering::Relaxed);
    // Publish: every write above happens before the even sequence number.
    slot.seq.store(seq + 2, Ordering::Release);
    counters::add(Counter::SharedInserts);
    true
}

/// Adds the claims' encoding to the entry for a token digest that was
/// stored without it, where it fits: the first backend to build the
/// encoding saves every other one from building it again. Gives up rather
/// than wait when the slot changes under it.
pub fn attach(digest: &[u8; 32], encoded: &[u8]) {
    if !enabled() {
        return;
    }
    let want = words::<4>(digest);
    for slot in tagged(digest, &want) {
        let seq = slot.seq.load(Ordering::Acquire);
        if seq == 0 || seq & 1 == 1 || load(&slot.digest) != want {
            continue;
        }
        // What is read here holds only if no writer claimed the slot since:
        // the claim below fails if one did (sequence numbers only grow).
        let (mut lens, flags) = unpack(slot.meta.load(Ordering::Relaxed));
        if lens.encoded != 0 || encoded.is_empty() {
            return; // already there, or nothing to add
        }
        lens.encoded = encoded.len();
        if lens.words() > DATA_WORDS {
            return;
        }
        if slot
            .seq
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        fence(Ordering::Release); // as in put()
        store_data(slot, lens.encoded_word(), encoded);
        slot.meta.store(pack(lens, flags), Ordering::Relaxed);
        slot.seq.store(seq + 2, Ordering::Release);
        return;
    }
}
