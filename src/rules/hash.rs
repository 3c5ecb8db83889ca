//! URL hashing: Squid-CARP-compatible rendezvous hashing of a URL onto one of N members.
//!
//! # Why CARP
//!
//! In a cache farm each URL should live on one cache. When the front-end Squids route misses to
//! their parents with CARP (`cache_peer … parent … carp`), and l7mark routes HTTP requests and
//! ICP queries for the same URLs to the same caches, all three must agree on "who owns this URL".
//! l7mark therefore implements the exact CARP selection of Squid's `src/carp.cc` (read from
//! squid-cache/squid at 7c20a8a; the algorithm is unchanged since Squid 2.5, 2002), written anew
//! from the algorithm:
//!
//! - **Member hash**, per member name, over its bytes `c`: `h = 0; h += rotl(h, 19) + c` for each
//!   byte, then `h += h * 0x62531965; h = rotl(h, 21)` (32-bit wrapping arithmetic). The name is
//!   Squid's `CachePeer::name`: the `cache_peer` host name *as spelled* in `squid.conf` (the case
//!   is kept, no port), or its `name=` option. In l7mark it is the `url_hash.members` entry.
//! - **Load multipliers** from the weights (Squid `weight=`, default 1): load factor
//!   `P_k = w_k / Σw` (set to 0 when `floor(P_k·1000) == 0`), members sorted by weight ascending
//!   (stable: equal weights keep their list order), then with `K` members,
//!   `X_k = ((K−k+1)·(P_k − P_{k−1}) / (X_1·…·X_{k−1}) + X_{k−1}^{K−k+1})^{1/(K−k+1)}`,
//!   `P_0 = X_0 = 0`. Equal weights give every member the multiplier 1.
//! - **Key**: Squid's default (no `carp-key=`) is the effective request URI,
//!   `http://host[:port]/path?query`: scheme and host lower-case, the port only when not the
//!   scheme's default, the path and query as received. That is what
//!   [`super::url::canonical_http_url`] builds from an HTTP request and what
//!   [`super::url::split_icp_url`] normalizes an ICP query URL to (Squid puts the very same
//!   string in its ICP queries, `StoreEntry::url()`). For TLS the key is the SNI.
//! - **Selection**: members in the sorted order; a running 32-bit URL hash `u` is **not reset
//!   between members** — for each member, `u += rotl(u, 19) + c` for every key byte, then
//!   `x = u ^ member_hash; x += x * 0x62531965; x = rotl(x, 21)`; `score = x as f64 ·
//!   multiplier`. The first member with the strictly highest score wins (`score > best`, `best`
//!   starting at 0). The running hash is a quirk of Squid's loop (the `user_hash` variable is
//!   declared outside it); l7mark reproduces it bit for bit, since it decides the owners.
//! - **Bytes** are added as C `char` on x86/x86-64, i.e. **sign-extended**: a byte `b ≥ 0x80` adds
//!   `0xFFFF_FF00 | b`. (Squid on a platform with unsigned `char`, e.g. ARM Linux, differs for
//!   such bytes; percent-encoded URLs and ASCII names never contain them.)
//!
//! # Consequences worth knowing (they are Squid's too)
//!
//! - Because of the running hash, member *k*'s score depends on its position in the sorted order.
//!   **Appending** a member (with a weight ≥ the others) or **removing the last** one moves only
//!   about 1/N of the URLs, all to / from that member. **Removing a member from the middle** of
//!   the list re-deals the URLs among the members after it (≈ 58 % of URLs move when the middle
//!   one of 3 goes). To take a member out of service temporarily, keep it in the list and mark
//!   it unavailable ([`Carp::select_where`], [`super::Table::decide_with`]): like Squid skipping a
//!   dead peer, the running hash still advances over it, so only its own URLs move.
//! - Changing any weight changes every multiplier: many URLs move.
//! - A member whose weight is under 0.1 % of the total gets load factor 0 and is never chosen;
//!   validation rejects such weights.
//!
//! # Caveats
//!
//! - Squid sorts the members with C `qsort`, which glibc implements as a stable merge sort for
//!   arrays of this size; with another libc, members of *equal* weight in a list of *unequal*
//!   weights might be ordered differently there. Equal weights everywhere (the common case) are
//!   unaffected, as are distinct weights.
//! - Squid master after commit ff60b10 (Aug 2025, not in a release at the time of writing)
//!   percent-encodes characters outside RFC 3986 `pchar` in the URI it hashes, including the `?`
//!   of a query; l7mark follows the released behaviour (path and query as received).
//! - Squid's `carp-key=` option (hash only some URL parts) is not supported; with it set on the
//!   Squid side the owners differ.
//! - IP-literal hosts: Squid prints IPv6 addresses in its own canonical form; l7mark keeps the
//!   literal as written (lower-cased).

use thiserror::Error;

use super::limits::{MAX_HASH_MEMBERS, MAX_WEIGHT};

/// Why a CARP member list cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CarpError {
    /// No members.
    #[error("no members")]
    Empty,
    /// More members than [`MAX_HASH_MEMBERS`].
    #[error("{0} members, at most {MAX_HASH_MEMBERS} are supported")]
    TooMany(usize),
    /// The weights list has a different length than the member list.
    #[error("{weights} weights for {members} members")]
    WeightCount {
        /// Number of weights given.
        weights: usize,
        /// Number of members.
        members: usize,
    },
    /// A weight outside `1..=`[`MAX_WEIGHT`].
    #[error("weight {weight} of member #{index} is outside 1..={MAX_WEIGHT}")]
    Weight {
        /// Position of the member in the list.
        index: usize,
        /// The offending weight.
        weight: u32,
    },
    /// A weight so small against the total that Squid gives the member load factor 0.
    #[error(
        "weight {weight} of member #{index} is under 0.1% of the total {total}: CARP would never choose it"
    )]
    ShareTooSmall {
        /// Position of the member in the list.
        index: usize,
        /// The offending weight.
        weight: u32,
        /// Sum of all weights.
        total: u64,
    },
}

/// Multiplier constant of Squid's CARP hash mixing step.
const CARP_MIX: u32 = 0x6253_1965;

/// One step of the CARP string hash: `h += rotl(h, 19) + c`, the byte taken as a signed C `char`.
#[inline]
fn carp_step(h: u32, byte: u8) -> u32 {
    // `as i8 as i32 as u32` is exactly C's `char` → `int` → `unsigned int` conversion on
    // platforms where `char` is signed (x86, x86-64): sign extension.
    let c = i32::from(byte as i8) as u32;
    h.wrapping_add(h.rotate_left(19).wrapping_add(c))
}

/// Squid's final mixing step: `x += x * 0x62531965; x = rotl(x, 21)`.
#[inline]
fn carp_mix(x: u32) -> u32 {
    x.wrapping_add(x.wrapping_mul(CARP_MIX)).rotate_left(21)
}

/// The CARP hash of a member name (Squid `CachePeer::carp.hash`).
pub fn member_hash(name: &[u8]) -> u32 {
    carp_mix(name.iter().fold(0, |h, &b| carp_step(h, b)))
}

/// A CARP member list, ready to select owners. Immutable, cheap to share.
#[derive(Debug, Clone, PartialEq)]
pub struct Carp {
    /// Members in Squid's order (weight ascending, stable).
    members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    /// Position of the member in the caller's list (its mark's position in `url_hash.marks`).
    slot: usize,
    hash: u32,
    multiplier: f64,
}

// === impl Carp ===

impl Carp {
    /// Build a member list from names and optional weights (absent: all 1), as Squid's
    /// `carpInit` does. Names are the Squid peer names (see the module documentation).
    pub fn new<S: AsRef<[u8]>>(names: &[S], weights: Option<&[u32]>) -> Result<Carp, CarpError> {
        let k = names.len();
        if k == 0 {
            return Err(CarpError::Empty);
        }
        if k > MAX_HASH_MEMBERS {
            return Err(CarpError::TooMany(k));
        }
        let weights: Vec<u32> = match weights {
            Some(w) if w.len() != k => {
                return Err(CarpError::WeightCount {
                    weights: w.len(),
                    members: k,
                });
            }
            Some(w) => w.to_vec(),
            None => vec![1; k],
        };
        if let Some((index, &weight)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(1..=MAX_WEIGHT).contains(*w))
        {
            return Err(CarpError::Weight { index, weight });
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let total_f = total as f64;

        // Load factors: weight / total, forced to 0 below 0.1 % (as Squid does). A zero factor
        // means the member can never win, which is surely not what the operator wants.
        let mut order: Vec<(usize, u32, f64)> = Vec::with_capacity(k);
        for (slot, &w) in weights.iter().enumerate() {
            let mut factor = f64::from(w) / total_f;
            if (factor * 1000.0).floor() == 0.0 {
                factor = 0.0;
            }
            if factor == 0.0 {
                return Err(CarpError::ShareTooSmall {
                    index: slot,
                    weight: w,
                    total,
                });
            }
            order.push((slot, w, factor));
        }
        // Squid sorts by weight ascending with qsort; glibc's is a stable merge sort here.
        order.sort_by_key(|&(_, w, _)| w);

        // The load-factor multipliers X_k, computed in the same floating-point steps as Squid
        // so the products (and therefore the winners) are bit-identical.
        let kf = k as f64;
        let mut p_last = 0.0_f64;
        let mut x_last = 0.0_f64;
        let mut x_product = 1.0_f64;
        let mut members = Vec::with_capacity(k);
        for (i, &(slot, _, factor)) in order.iter().enumerate() {
            let kk1 = kf - i as f64; // K − k + 1 with k = i + 1
            let mut x = (kk1 * (factor - p_last)) / x_product;
            x += x_last.powf(kk1);
            x = x.powf(1.0 / kk1);
            x_product *= x;
            x_last = x;
            p_last = factor;
            let name = names.get(slot).map(AsRef::as_ref).unwrap_or_default();
            members.push(Member {
                slot,
                hash: member_hash(name),
                multiplier: x,
            });
        }
        Ok(Carp { members })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a member list has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The owner of `key`: the position (in the caller's list) of the member CARP picks.
    pub fn select(&self, key: &[u8]) -> usize {
        self.select_parts(&[key])
    }

    /// [`Carp::select`] for a key given as consecutive pieces (hashed as their concatenation),
    /// so callers can hash `"http://" + host + path` without building the string.
    pub fn select_parts(&self, key: &[&[u8]]) -> usize {
        self.select_where(key, |_| true)
            .or_else(|| self.members.first().map(|m| m.slot))
            .unwrap_or(0)
    }

    /// The owner of `key` among the members for which `available(position)` is true, or `None`
    /// when none is available.
    ///
    /// Unavailable members are skipped exactly as Squid skips a dead peer: the running URL hash
    /// still advances over them, so only the URLs they owned move elsewhere. (If every score is
    /// 0 — a 2⁻³² chance per member — Squid picks no member; [`Carp::select_parts`] then falls back
    /// to the first member in CARP order.)
    pub fn select_where(
        &self,
        key: &[&[u8]],
        mut available: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut user_hash: u32 = 0;
        let mut best: Option<usize> = None;
        let mut high_score = 0.0_f64;
        for member in &self.members {
            // Not reset per member: see "Selection" in the module documentation.
            for piece in key {
                for &b in *piece {
                    user_hash = carp_step(user_hash, b);
                }
            }
            let combined = carp_mix(user_hash ^ member.hash);
            let score = f64::from(combined) * member.multiplier;
            if score > high_score && available(member.slot) {
                best = Some(member.slot);
                high_score = score;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_sign_extends_high_bytes() {
        assert_eq!(carp_step(0, b'a'), 0x61);
        assert_eq!(carp_step(0, 0x80), 0xFFFF_FF80);
        assert_eq!(carp_step(1, 0), 1 + (1 << 19));
    }

    #[test]
    fn equal_weights_give_multiplier_one() {
        for k in 1..=12 {
            let names: Vec<String> = (0..k).map(|i| format!("m{i}")).collect();
            let carp = Carp::new(&names, None).unwrap_or_else(|e| panic!("{e}"));
            for m in &carp.members {
                assert!(
                    (m.multiplier - 1.0).abs() < 1e-12,
                    "k={k}: {}",
                    m.multiplier
                );
            }
        }
    }

    #[test]
    fn rejects_bad_lists() {
        let none: [&str; 0] = [];
        assert_eq!(Carp::new(&none, None), Err(CarpError::Empty));
        assert!(matches!(
            Carp::new(&["a", "b"], Some(&[1])),
            Err(CarpError::WeightCount { .. })
        ));
        assert!(matches!(
            Carp::new(&["a", "b"], Some(&[1, 0])),
            Err(CarpError::Weight { index: 1, .. })
        ));
        assert!(matches!(
            Carp::new(&["a", "b"], Some(&[1, 2000])),
            Err(CarpError::ShareTooSmall { index: 0, .. })
        ));
    }

    #[test]
    fn unavailable_members_are_skipped() {
        let carp = Carp::new(&["a", "b", "c"], None).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..200 {
            let key = format!("http://h/{i}");
            let owner = carp.select(key.as_bytes());
            let without = carp
                .select_where(&[key.as_bytes()], |m| m != owner)
                .unwrap_or(usize::MAX);
            assert_ne!(without, owner);
            for other in 0..3 {
                if other != owner {
                    assert_eq!(
                        carp.select_where(&[key.as_bytes()], |m| m != other),
                        Some(owner)
                    );
                }
            }
            assert_eq!(carp.select_where(&[key.as_bytes()], |_| false), None);
        }
    }
}
