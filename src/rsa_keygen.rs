//! RSA-4096 key generation for the Talos service-account key (PKCS#1 DER out); pure: it must not touch files, the environment, the clock or the terminal, and takes randomness only from the caller's `SecureRandom`.
//!
//! `talosctl gen secrets` creates this key with Go's `rsa.GenerateKey(rand.Reader, 4096)`
//! and stores `x509.MarshalPKCS1PrivateKey`. ring cannot generate RSA keys and the `rsa`
//! crate is slow here, so the prime search (the hot path) is done in this module:
//!
//! * candidates are 2048-bit odd numbers with the top two bits set, like Go's
//!   `crypto/rand.Prime` and `crypto/internal/fips140/rsa.randomPrime`, so that
//!   p ≥ 1.5·2^2047 > √2·2^2047 (FIPS 186-5 A.1.3 steps 4.4/5.4) and n = p·q has
//!   exactly 4096 bits;
//! * an incremental sieve over all odd primes below 2^20 (82 024 of them, 65537
//!   included, which also enforces gcd(e, p − 1) = 1) leaves about 8% of the odd
//!   numbers, so about 58 candidates per prime reach a modular exponentiation
//!   (Go 1.19's `ProbablyPrime` only divides by primes ≤ 53, and Go's FIPS module
//!   by the first 74 odd primes). Unlike FIPS 186-5 A.1.3, which draws a fresh
//!   candidate each time, we step by 2 from one random start per prime (the
//!   incremental search analysed by Brandt and Damgård, CRYPTO '92, also used
//!   by OpenSSL 1.1's `probable_prime`): primes after long gaps are slightly
//!   favoured, a small entropy loss that they bound;
//! * survivors get a Miller–Rabin test (FIPS 186-5 Appendix B.3.1) with base 2
//!   first (cheap: a doubling instead of a multiplication) and then
//!   `RANDOM_BASE_ROUNDS` (5) rounds with random bases, in Montgomery arithmetic on
//!   64-bit limbs (CIOS, u128 products);
//! * two worker threads search at once and the first two acceptable primes win.
//!
//! The key is then assembled (n, d = e⁻¹ mod λ(n), dp, dq, qinv) with the `rsa`
//! crate, whose `from_p_q` also validates it, and encoded here as PKCS#1 DER.
//!
//! Secrets that we own (the primes, byte buffers, the output) are kept in
//! `Zeroizing` buffers or wiped on drop. What cannot be wiped: copies that the
//! compiler leaves on the stack and in registers when `[u64; N]` values are moved
//! or returned, and the temporaries that `num-bigint-dig` allocates inside the
//! `rsa` crate while computing d, dp, dq and qinv.
//!
//! Timing: like Go's `math/big` path this is not constant time. Composite
//! candidates leak nothing of value; for the final primes the sieve and the
//! Miller–Rabin loop structure depend on the value. The exponentiations use a
//! constant-time table scan and constant-time conditional doubling and final
//! subtraction. This runs once, offline, on the operator's machine.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use pkcs1::UintRef;
use pkcs1::der::Encode;
use rsa::BigUint;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use zeroize::{Zeroize, Zeroizing};

/// Bits in each prime factor.
const PRIME_BITS: usize = 2048;
/// 64-bit limbs in each prime factor.
const LIMBS: usize = PRIME_BITS / 64;
/// Bytes in each prime factor.
const PRIME_BYTES: usize = PRIME_BITS / 8;
/// Bits in the modulus n = p·q.
const MODULUS_BITS: usize = 2 * PRIME_BITS;
/// The public exponent, as Go's `rsa.GenerateKey` (F4).
const PUBLIC_EXPONENT: u32 = 65537;
/// Miller–Rabin rounds with random bases after the base-2 round.
///
/// FIPS 186-5 Appendix B.3.1 (random bases, steps 4.1–4.2); the round count
/// for random candidates comes from its Table B.1. Go's
/// `crypto/internal/fips140/rsa` uses 4 rounds for candidates of ≥ 1345 bits,
/// and Go 1.19's `ProbablyPrime(20)` uses 20 plus a Lucas test. We use 5,
/// one more than Go's FIPS module, after the base-2 round that screens out
/// composites.
const RANDOM_BASE_ROUNDS: usize = 5;
/// Odd primes below this bound sieve the candidates (65537 is among them).
///
/// By Mertens' theorem 2^20 leaves ≈ 58 base-2 rounds per prime where 2^16
/// leaves ≈ 72; measured here, a round costs ≈ 3 ms and a 2^20 sieve window
/// (residues and marks) ≈ 7 ms, paid about twice per key and worker.
const SIEVE_BOUND: u32 = 1 << 20;
/// Odd offsets covered by one sieve window (start, start+2, …).
///
/// A 2048-bit prime is expected about every 710 odd numbers; a window with no
/// prime (probability about e^-23) makes the worker draw a fresh start.
const WINDOW: usize = 1 << 14;
/// Prime-search threads.
///
/// Fixed rather than asked from the OS: `available_parallelism` reads files
/// (cgroup limits) and this module does no I/O. Two matches the target
/// machines; with one core the threads just take turns.
const WORKERS: usize = 2;
/// Whole-key attempts before giving up (a retry needs a ~2^-2000 event).
const MAX_ATTEMPTS: usize = 4;

/// Errors from [`generate_rsa4096`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RsaKeygenError {
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Rng,
    /// A prime-search thread failed (panicked) before two primes were found.
    #[error("a prime-search thread failed")]
    Worker,
    /// The primes found could not be turned into a valid key.
    #[error("RSA key assembly failed: {0}")]
    Assembly(&'static str),
    /// The PKCS#1 DER encoding failed.
    #[error("PKCS#1 DER encoding failed: {0}")]
    Der(#[from] pkcs1::der::Error),
}

/// Generates an RSA-4096 key (e = 65537) and returns its PKCS#1 RSAPrivateKey DER.
///
/// The result has the same form as Go's `x509.MarshalPKCS1PrivateKey` of a key
/// from `rsa.GenerateKey(rand.Reader, 4096)`: two-prime, version 0, p > q, and
/// d = e⁻¹ mod lcm(p−1, q−1) as FIPS 186-5 A.1.1 requires (Go computes d modulo
/// (p−1)(q−1) instead; both are valid private exponents for the same key).
///
/// All randomness comes from `rng`: candidate starts and Miller–Rabin bases are
/// filled from it, on the calling thread, while two threads search for primes.
pub fn generate_rsa4096(
    rng: &dyn ring::rand::SecureRandom,
) -> Result<Zeroizing<Vec<u8>>, RsaKeygenError> {
    generate_with_workers(&|dest: &mut [u8]| rng.fill(dest).is_ok(), WORKERS)
}

/// Key generation with a plain fill function, so that tests can use any source.
fn generate_with_workers(
    fill: &dyn Fn(&mut [u8]) -> bool,
    workers: usize,
) -> Result<Zeroizing<Vec<u8>>, RsaKeygenError> {
    let sieve = sieve_primes();
    for _ in 0..MAX_ATTEMPTS {
        let (p, q) = find_prime_pair(fill, &sieve, workers.max(1))?;
        if let Some(der) = assemble(&p, &q)? {
            return Ok(der);
        }
    }
    Err(RsaKeygenError::Assembly(
        "no valid private exponent after repeated attempts",
    ))
}

// ---------------------------------------------------------------------------
// Limb helpers: little-endian arrays of u64.
// ---------------------------------------------------------------------------

/// Big-endian bytes (at most 8·N of them) to little-endian limbs.
fn limbs_from_be<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (i, chunk) in bytes.rchunks(8).enumerate().take(N) {
        let mut word = [0u8; 8];
        word[8 - chunk.len()..].copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(word);
        word.zeroize();
    }
    out
}

/// Little-endian limbs to 8·N big-endian bytes.
fn limbs_to_be<const N: usize>(x: &[u64; N]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 * N));
    for limb in x.iter().rev() {
        out.extend_from_slice(&limb.to_be_bytes());
    }
    out
}

/// Number of significant bits.
fn bit_len<const N: usize>(x: &[u64; N]) -> usize {
    for i in (0..N).rev() {
        if x[i] != 0 {
            return 64 * i + 64 - x[i].leading_zeros() as usize;
        }
    }
    0
}

/// Bit `i` of `x` (0 or 1).
fn bit<const N: usize>(x: &[u64; N], i: usize) -> u64 {
    (x[i / 64] >> (i % 64)) & 1
}

/// Compares as unsigned integers (variable time).
fn cmp_limbs<const N: usize>(a: &[u64; N], b: &[u64; N]) -> CmpOrdering {
    for i in (0..N).rev() {
        match a[i].cmp(&b[i]) {
            CmpOrdering::Equal => {}
            other => return other,
        }
    }
    CmpOrdering::Equal
}

/// a − b mod 2^(64N) and the final borrow (0 or 1).
fn sub_limbs<const N: usize>(a: &[u64; N], b: &[u64; N]) -> ([u64; N], u64) {
    let mut out = [0u64; N];
    let mut borrow = 0u64;
    for i in 0..N {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(borrow);
        out[i] = d2;
        borrow = u64::from(b1 | b2);
    }
    (out, borrow)
}

/// x + small, or `None` if the sum does not fit in N limbs.
fn add_small<const N: usize>(x: &[u64; N], small: u64) -> Option<[u64; N]> {
    let mut out = *x;
    let mut carry = small;
    for limb in out.iter_mut() {
        let (s, c) = limb.overflowing_add(carry);
        *limb = s;
        carry = u64::from(c);
        if carry == 0 {
            return Some(out);
        }
    }
    (carry == 0).then_some(out)
}

/// `if choose { a } else { b }` without a branch on `choose` (0 or 1).
fn select<const N: usize>(choose: u64, a: &[u64; N], b: &[u64; N]) -> [u64; N] {
    let mask = 0u64.wrapping_sub(choose);
    let mut out = [0u64; N];
    for i in 0..N {
        out[i] = (a[i] & mask) | (b[i] & !mask);
    }
    out
}

// ---------------------------------------------------------------------------
// Montgomery arithmetic modulo an odd n, R = 2^(64N).
// ---------------------------------------------------------------------------

/// Montgomery context for an odd modulus n ≥ 3.
struct Mont<const N: usize> {
    /// The modulus.
    n: [u64; N],
    /// −n⁻¹ mod 2^64.
    n0inv: u64,
    /// R mod n, i.e. 1 in Montgomery form.
    one: [u64; N],
}

impl<const N: usize> Drop for Mont<N> {
    fn drop(&mut self) {
        self.n.zeroize();
        self.one.zeroize();
    }
}

impl<const N: usize> Mont<N> {
    /// `None` unless n is odd and at least 3.
    fn new(n: &[u64; N]) -> Option<Self> {
        if N == 0 || n[0] & 1 == 0 || bit_len(n) < 2 {
            return None;
        }
        // Newton iteration for n0⁻¹ mod 2^64: n0·n0 ≡ 1 (mod 8) for odd n0,
        // and each step doubles the number of correct low bits (3→96).
        let n0 = n[0];
        let mut inv = n0;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let mut mont = Mont {
            n: *n,
            n0inv: inv.wrapping_neg(),
            one: [0u64; N],
        };
        // R mod n by doubling 1 mod n, 64N times.
        let mut one = [0u64; N];
        one[0] = 1;
        for _ in 0..64 * N {
            one = mont.double(&one);
        }
        mont.one = one;
        Some(mont)
    }

    /// Subtracts n once if `hi·2^(64N) + t ≥ n`; requires the value to be < 2n.
    fn reduce_once(&self, t: &[u64; N], hi: u64) -> [u64; N] {
        let (d, borrow) = sub_limbs(t, &self.n);
        // Keep the difference if there was a carry word or no borrow.
        select(hi | (borrow ^ 1), &d, t)
    }

    /// 2a mod n for a < n.
    fn double(&self, a: &[u64; N]) -> [u64; N] {
        let mut t = [0u64; N];
        let mut carry = 0u64;
        for i in 0..N {
            t[i] = (a[i] << 1) | carry;
            carry = a[i] >> 63;
        }
        self.reduce_once(&t, carry)
    }

    /// a·b·R⁻¹ mod n for a, b < n (CIOS: Koç, Acar, Kaliski 1996, with the
    /// multiplication and reduction passes fused into one loop).
    #[inline(always)]
    fn mul(&self, a: &[u64; N], b: &[u64; N]) -> [u64; N] {
        let n = &self.n;
        let mut t = [0u64; N];
        let mut t_hi = 0u64; // t[N]; t < 2n throughout, so one extra word suffices
        for &bi in b.iter() {
            // Column 0: t0 + a0·bi decides the reduction factor m.
            let s = u128::from(t[0]) + u128::from(a[0]) * u128::from(bi);
            let mut c1 = (s >> 64) as u64;
            let lo = s as u64;
            let m = lo.wrapping_mul(self.n0inv);
            let s = u128::from(lo) + u128::from(m) * u128::from(n[0]);
            let mut c2 = (s >> 64) as u64;
            for j in 1..N {
                let s = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(c1);
                c1 = (s >> 64) as u64;
                let s = u128::from(s as u64) + u128::from(m) * u128::from(n[j]) + u128::from(c2);
                c2 = (s >> 64) as u64;
                t[j - 1] = s as u64;
            }
            let s = u128::from(t_hi) + u128::from(c1) + u128::from(c2);
            t[N - 1] = s as u64;
            t_hi = (s >> 64) as u64;
        }
        self.reduce_once(&t, t_hi)
    }

    /// a²·R⁻¹ mod n. A dedicated squaring (cross products once, doubled,
    /// then a separate reduction) measured no faster here than the fused CIOS
    /// loop, so squaring is a multiplication.
    #[inline(always)]
    fn sqr(&self, a: &[u64; N]) -> [u64; N] {
        self.mul(a, a)
    }

    /// R² mod n, by doubling R mod n another 64N times.
    fn r_squared(&self) -> [u64; N] {
        let mut r = self.one;
        for _ in 0..64 * N {
            r = self.double(&r);
        }
        r
    }

    /// a^e in Montgomery form, for `base` = a·R mod n, with 4-bit fixed windows
    /// and a constant-time table scan.
    fn pow(&self, base: &[u64; N], exp: &[u64; N]) -> [u64; N] {
        let mut table = [[0u64; N]; 16];
        table[0] = self.one;
        table[1] = *base;
        for k in 2..16 {
            table[k] = self.mul(&table[k - 1], base);
        }
        let windows = bit_len(exp).div_ceil(4);
        let mut x = self.one;
        for w in (0..windows).rev() {
            if w + 1 != windows {
                for _ in 0..4 {
                    x = self.sqr(&x);
                }
            }
            let idx = (exp[(4 * w) / 64] >> ((4 * w) % 64)) & 0xF;
            let mut entry = [0u64; N];
            for (k, row) in table.iter().enumerate() {
                // (k ^ idx) − 1 has its top bit set exactly when k == idx.
                let hit = ((k as u64 ^ idx).wrapping_sub(1)) >> 63;
                entry = select(hit, row, &entry);
            }
            x = self.mul(&x, &entry);
            entry.zeroize();
        }
        table.zeroize();
        x
    }

    /// 2^e in Montgomery form: square, and double where e has a one bit
    /// (doubling is an addition, much cheaper than a multiplication).
    fn pow2(&self, exp: &[u64; N]) -> [u64; N] {
        let mut x = self.one;
        for i in (0..bit_len(exp)).rev() {
            x = self.sqr(&x);
            let doubled = self.double(&x);
            x = select(bit(exp, i), &doubled, &x);
        }
        x
    }

    /// Converts out of Montgomery form.
    #[cfg(test)]
    fn out_of_mont(&self, a: &[u64; N]) -> [u64; N] {
        let mut one = [0u64; N];
        one[0] = 1;
        self.mul(a, &one)
    }
}

// ---------------------------------------------------------------------------
// Miller–Rabin (FIPS 186-5 Appendix B.3.1).
// ---------------------------------------------------------------------------

/// State shared by the Miller–Rabin rounds on one candidate w.
struct MillerRabin<const N: usize> {
    mont: Mont<N>,
    /// m, odd, with w − 1 = 2^a·m.
    m: [u64; N],
    /// a ≥ 1.
    a: usize,
    /// w − 1 in Montgomery form (−R mod n).
    minus_one: [u64; N],
}

impl<const N: usize> Drop for MillerRabin<N> {
    fn drop(&mut self) {
        self.m.zeroize();
        self.minus_one.zeroize();
    }
}

impl<const N: usize> MillerRabin<N> {
    /// `None` unless w is odd and w ≥ 5 (so that a base in [2, w−2] exists).
    fn new(w: &[u64; N]) -> Option<Self> {
        let mont = Mont::new(w)?;
        let mut five = [0u64; N];
        five[0] = 5;
        if cmp_limbs(w, &five) == CmpOrdering::Less {
            return None;
        }
        // w is odd, so w − 1 just clears bit 0 (no borrow).
        let mut w_minus_1 = *w;
        w_minus_1[0] &= !1;
        let mut a = 0usize;
        while bit(&w_minus_1, a) == 0 {
            a += 1;
        }
        let mut m = [0u64; N];
        for (i, limb) in m.iter_mut().enumerate() {
            let lo = w_minus_1.get(i + a / 64).copied().unwrap_or(0);
            let hi = w_minus_1.get(i + a / 64 + 1).copied().unwrap_or(0);
            let shift = a % 64;
            *limb = if shift == 0 {
                lo
            } else {
                (lo >> shift) | (hi << (64 - shift))
            };
        }
        w_minus_1.zeroize();
        let (minus_one, _) = sub_limbs(&mont.n, &mont.one);
        Some(MillerRabin {
            mont,
            m,
            a,
            minus_one,
        })
    }

    /// Steps 4.5–4.7: z = b^m; w passes if z = ±1 or some z^(2^j) = −1, j < a.
    fn passes_from(&self, mut z: [u64; N]) -> bool {
        if z == self.mont.one || z == self.minus_one {
            return true;
        }
        for _ in 1..self.a {
            z = self.mont.sqr(&z);
            if z == self.minus_one {
                return true;
            }
            if z == self.mont.one {
                return false;
            }
        }
        false
    }

    /// The round with base b = 2.
    fn passes_base2(&self) -> bool {
        self.passes_from(self.mont.pow2(&self.m))
    }

    /// One round with base `b` (1 < b < w − 1, plain form).
    fn passes_base(&self, b: &[u64; N]) -> bool {
        let b_mont = self.mont.mul(b, &self.mont.r_squared());
        self.passes_from(self.mont.pow(&b_mont, &self.m))
    }

    /// `rounds` rounds with random bases (steps 4.1–4.2: draw wlen bits and
    /// reject b ≤ 1 and b ≥ w − 1). `Ok(false)` means composite; `Err` means the
    /// random source stopped.
    fn passes_random_bases(
        &self,
        rounds: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<bool, Stopped> {
        let wlen = bit_len(&self.mont.n);
        let (w_minus_1, _) = {
            let mut one = [0u64; N];
            one[0] = 1;
            sub_limbs(&self.mont.n, &one)
        };
        let mut bytes = Zeroizing::new(vec![0u8; 8 * N]);
        let mut done = 0;
        while done < rounds {
            if !fill(&mut bytes) {
                return Err(Stopped);
            }
            let mut b: Zeroizing<[u64; N]> = Zeroizing::new(limbs_from_be(&bytes));
            // Keep exactly wlen bits.
            for i in wlen..64 * N {
                b[i / 64] &= !(1u64 << (i % 64));
            }
            if bit_len(&b) <= 1 || cmp_limbs(&b, &w_minus_1) != CmpOrdering::Less {
                continue;
            }
            if !self.passes_base(&b) {
                return Ok(false);
            }
            done += 1;
        }
        Ok(true)
    }
}

/// The random source was stopped (search over, or the RNG failed).
#[derive(Debug)]
struct Stopped;

/// Full probable-prime test of an odd w: base 2, then `RANDOM_BASE_ROUNDS`
/// random bases. Values below 5 are answered directly. The search itself runs
/// the same steps inline (after its sieve); tests use this entry point.
#[cfg(test)]
fn is_probable_prime<const N: usize>(
    w: &[u64; N],
    fill: &mut dyn FnMut(&mut [u8]) -> bool,
) -> Result<bool, Stopped> {
    if bit_len(w) <= 3 && N > 0 && w[0] < 5 {
        return Ok(w[0] == 2 || w[0] == 3);
    }
    let Some(mr) = MillerRabin::new(w) else {
        return Ok(false); // even
    };
    if !mr.passes_base2() {
        return Ok(false);
    }
    mr.passes_random_bases(RANDOM_BASE_ROUNDS, fill)
}

// ---------------------------------------------------------------------------
// Sieve.
// ---------------------------------------------------------------------------

/// The sieve primes with their Barrett reciprocals.
struct SievePrimes {
    /// The odd primes below `SIEVE_BOUND`, and 65537 (once).
    primes: Vec<u32>,
    /// ⌊(2^64 − 1) / p⌋ for each prime.
    recips: Vec<u64>,
}

/// Sieve of Eratosthenes over the odd numbers below `SIEVE_BOUND`.
fn sieve_primes() -> SievePrimes {
    let bound = SIEVE_BOUND as usize;
    // composite[k] is for the odd number 2k + 1.
    let mut composite = vec![false; bound / 2];
    let mut primes = Vec::new();
    for k in 1..bound / 2 {
        if composite[k] {
            continue;
        }
        let p = 2 * k + 1;
        primes.push(p as u32);
        let mut j = p * p / 2;
        while j < bound / 2 {
            composite[j] = true;
            j += p;
        }
    }
    if !primes.contains(&PUBLIC_EXPONENT) {
        primes.push(PUBLIC_EXPONENT);
    }
    let recips = primes.iter().map(|&p| u64::MAX / u64::from(p)).collect();
    SievePrimes { primes, recips }
}

/// x mod p for p < 2^32 (two 32-bit steps per limb keep everything in u64);
/// the reference for `residues`.
#[cfg(test)]
fn rem_small<const N: usize>(x: &[u64; N], p: u32) -> u32 {
    let p = u64::from(p);
    let mut r = 0u64;
    for &limb in x.iter().rev() {
        r = ((r << 32) | (limb >> 32)) % p;
        r = ((r << 32) | (limb & 0xFFFF_FFFF)) % p;
    }
    r as u32
}

/// x mod p for every sieve prime, into `out`.
///
/// Horner's rule on 32-bit digits with Barrett reduction: for v < 2^52 and
/// q = ⌊v·⌊(2^64−1)/p⌋ / 2^64⌋, v − q·p < 2p, so one correction suffices.
/// The primes are taken in blocks and the digits in the inner loop over a
/// block are independent, so the reductions overlap instead of waiting on
/// each other as one division chain per prime would.
fn residues<const N: usize>(x: &[u64; N], sieve: &SievePrimes, out: &mut Vec<u32>) {
    const BLOCK: usize = 512;
    const { assert!(SIEVE_BOUND <= 1 << 20) };
    out.clear();
    let mut acc = [0u64; BLOCK];
    for (primes, recips) in sieve.primes.chunks(BLOCK).zip(sieve.recips.chunks(BLOCK)) {
        let acc = &mut acc[..primes.len()];
        acc.fill(0);
        for &limb in x.iter().rev() {
            for digit in [limb >> 32, limb & 0xFFFF_FFFF] {
                for ((r, &p), &recip) in acc.iter_mut().zip(primes).zip(recips) {
                    let p = u64::from(p);
                    let v = (*r << 32) | digit;
                    let q = ((u128::from(v) * u128::from(recip)) >> 64) as u64;
                    let t = v - q * p;
                    *r = if t >= p { t - p } else { t };
                }
            }
        }
        out.extend(acc.iter().map(|&r| r as u32));
    }
}

/// Marks in `bitmap` each i < WINDOW for which start + 2i is divisible by a
/// sieve prime or is ≡ 1 mod 65537 (then gcd(e, p − 1) ≠ 1, which FIPS 186-5
/// A.1.3 step 4.5 rejects: e = 65537 is prime).
fn sieve_window<const N: usize>(
    start: &[u64; N],
    sieve: &SievePrimes,
    rems: &mut Vec<u32>,
    bitmap: &mut [u64],
) {
    fn mark_from(first: u64, p: u64, bitmap: &mut [u64]) {
        let mut i = first as usize;
        while i < WINDOW {
            bitmap[i / 64] |= 1u64 << (i % 64);
            i += p as usize;
        }
    }
    bitmap.fill(0);
    residues(start, sieve, rems);
    for (&p, &r) in sieve.primes.iter().zip(rems.iter()) {
        let (p, r) = (u64::from(p), u64::from(r));
        let inv2 = p.div_ceil(2); // 2⁻¹ mod p for odd p
        // start + 2i ≡ 0 (mod p)  ⇔  i ≡ −r·2⁻¹ (mod p)
        mark_from(((p - r) % p) * inv2 % p, p, bitmap);
        if p == u64::from(PUBLIC_EXPONENT) {
            // start + 2i ≡ 1 (mod 65537)  ⇔  i ≡ (1 − r)·2⁻¹
            mark_from(((1 + p - r) % p) * inv2 % p, p, bitmap);
        }
    }
    rems.zeroize();
}

// ---------------------------------------------------------------------------
// Parallel search and coordination.
// ---------------------------------------------------------------------------

/// A prime factor, wiped on drop.
type Prime = Zeroizing<[u64; LIMBS]>;

/// Messages from the workers to the coordinating (calling) thread.
enum Msg {
    /// Worker `worker` wants `len` random bytes on its reply channel.
    Random { worker: usize, len: usize },
    /// A probable prime.
    Prime(Prime),
}

/// A worker's handle on the caller's random source, which stays on the
/// calling thread (`ring::rand::SecureRandom` is not required to be `Sync`).
struct RandomFeed<'a> {
    worker: usize,
    to_coordinator: mpsc::Sender<Msg>,
    replies: mpsc::Receiver<Option<Zeroizing<Vec<u8>>>>,
    stop: &'a AtomicBool,
}

impl RandomFeed<'_> {
    /// Fills `dest`, or returns false once the search is over or the RNG failed.
    fn fill(&self, dest: &mut [u8]) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let request = Msg::Random {
            worker: self.worker,
            len: dest.len(),
        };
        if self.to_coordinator.send(request).is_err() {
            return false;
        }
        match self.replies.recv() {
            Ok(Some(bytes)) if bytes.len() == dest.len() => {
                dest.copy_from_slice(&bytes);
                true
            }
            _ => false,
        }
    }
}

/// One search thread: draw a random start, sieve a window, test survivors;
/// after a prime (or an empty window) start afresh, until told to stop.
fn search_worker(feed: &RandomFeed<'_>, sieve: &SievePrimes) {
    // Where the survivors are says something about the prime: wiped on exit.
    let mut bitmap = Zeroizing::new(vec![0u64; WINDOW / 64]);
    let mut rems = Vec::with_capacity(sieve.primes.len());
    let mut bytes = Zeroizing::new(vec![0u8; PRIME_BYTES]);
    let mut fill = |dest: &mut [u8]| feed.fill(dest);
    'fresh: loop {
        if !fill(&mut bytes) {
            return;
        }
        // As Go's crypto/rand.Prime: set the top two bits and make it odd.
        bytes[0] |= 0xC0;
        bytes[PRIME_BYTES - 1] |= 1;
        let start: Zeroizing<[u64; LIMBS]> = Zeroizing::new(limbs_from_be(&bytes));
        sieve_window(&start, sieve, &mut rems, &mut bitmap);
        for i in 0..WINDOW {
            if bitmap[i / 64] >> (i % 64) & 1 == 1 {
                continue;
            }
            if feed.stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(candidate) = add_small(&start, 2 * i as u64) else {
                continue 'fresh; // ran past 2^2048: draw again
            };
            let candidate = Zeroizing::new(candidate);
            let Some(mr) = MillerRabin::new(&candidate) else {
                continue;
            };
            if !mr.passes_base2() {
                continue;
            }
            match mr.passes_random_bases(RANDOM_BASE_ROUNDS, &mut fill) {
                Ok(true) => {
                    if feed.to_coordinator.send(Msg::Prime(candidate)).is_err() {
                        return;
                    }
                    // A fresh start, so that the next prime is independent.
                    continue 'fresh;
                }
                Ok(false) => {}
                Err(Stopped) => return,
            }
        }
    }
}

/// |a − b| > 2^(PRIME_BITS − 100) (FIPS 186-5 A.1.3 step 5.5).
fn far_apart(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> bool {
    let (hi, lo) = match cmp_limbs(a, b) {
        CmpOrdering::Less => (b, a),
        _ => (a, b),
    };
    let (diff, _) = sub_limbs(hi, lo);
    let mut bound = [0u64; LIMBS];
    let k = PRIME_BITS - 100;
    bound[k / 64] = 1u64 << (k % 64);
    cmp_limbs(&diff, &bound) == CmpOrdering::Greater
}

/// Runs `workers` search threads until two acceptable primes are found.
///
/// The calling thread serves the random bytes and collects primes; the first
/// prime is kept, and a second one is accepted if it is far enough from it.
fn find_prime_pair(
    fill: &dyn Fn(&mut [u8]) -> bool,
    sieve: &SievePrimes,
    workers: usize,
) -> Result<(Prime, Prime), RsaKeygenError> {
    let stop = AtomicBool::new(false);
    let (to_coordinator, from_workers) = mpsc::channel::<Msg>();
    thread::scope(|scope| {
        let mut reply_senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (reply_tx, reply_rx) = mpsc::channel();
            reply_senders.push(reply_tx);
            let feed = RandomFeed {
                worker,
                to_coordinator: to_coordinator.clone(),
                replies: reply_rx,
                stop: &stop,
            };
            handles.push(scope.spawn(move || search_worker(&feed, sieve)));
        }
        // Only the workers hold senders now: the loop below ends when all exit.
        drop(to_coordinator);

        let mut found: Vec<Prime> = Vec::with_capacity(2);
        let mut rng_failed = false;
        while let Ok(msg) = from_workers.recv() {
            match msg {
                Msg::Random { worker, len } => {
                    let reply = if stop.load(Ordering::Relaxed) {
                        None
                    } else {
                        let mut buf = Zeroizing::new(vec![0u8; len]);
                        if fill(&mut buf) {
                            Some(buf)
                        } else {
                            rng_failed = true;
                            stop.store(true, Ordering::Relaxed);
                            None
                        }
                    };
                    if let Some(tx) = reply_senders.get(worker) {
                        // A worker that has gone away needs no answer.
                        let _ = tx.send(reply);
                    }
                }
                Msg::Prime(p) => {
                    if found.len() < 2 && found.iter().all(|f| far_apart(f, &p)) {
                        found.push(p);
                    }
                    if found.len() == 2 {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        // Joining here (rather than at the end of the scope) turns a worker
        // panic into an error instead of a panic of the caller. A panic is a
        // bug, so the primes found are not used then.
        let mut panicked = false;
        for handle in handles {
            panicked |= handle.join().is_err();
        }
        if rng_failed {
            return Err(RsaKeygenError::Rng);
        }
        if panicked {
            return Err(RsaKeygenError::Worker);
        }
        let second = found.pop();
        let first = found.pop();
        match (first, second) {
            (Some(a), Some(b)) => Ok((a, b)),
            // Not reached: workers stop only after two primes or an RNG failure.
            _ => Err(RsaKeygenError::Worker),
        }
    })
}

// ---------------------------------------------------------------------------
// Assembly and PKCS#1 encoding.
// ---------------------------------------------------------------------------

/// Builds the PKCS#1 DER from two distinct primes; `Ok(None)` asks for new
/// primes (d ≤ 2^2048, FIPS 186-5 A.1.1, which has probability ≈ 2^-2048).
fn assemble(
    a: &[u64; LIMBS],
    b: &[u64; LIMBS],
) -> Result<Option<Zeroizing<Vec<u8>>>, RsaKeygenError> {
    // p > q, a common convention; PKCS#1 does not require it and Go does not
    // sort the primes.
    let (p, q) = match cmp_limbs(a, b) {
        CmpOrdering::Greater => (a, b),
        CmpOrdering::Less => (b, a),
        CmpOrdering::Equal => return Err(RsaKeygenError::Assembly("p = q")),
    };
    let p_be = limbs_to_be(p);
    let q_be = limbs_to_be(q);
    // rsa::RsaPrivateKey wipes its own fields on drop (ZeroizeOnDrop); the
    // temporaries num-bigint-dig allocates while computing them are not wiped.
    let key = rsa::RsaPrivateKey::from_p_q(
        BigUint::from_bytes_be(&p_be),
        BigUint::from_bytes_be(&q_be),
        BigUint::from(PUBLIC_EXPONENT),
    )
    .map_err(|_| RsaKeygenError::Assembly("the rsa crate rejected the primes"))?;

    if key.n().bits() != MODULUS_BITS {
        return Err(RsaKeygenError::Assembly("modulus is not 4096 bits"));
    }
    if *key.e() != BigUint::from(PUBLIC_EXPONENT) {
        return Err(RsaKeygenError::Assembly("unexpected public exponent"));
    }
    // FIPS 186-5 A.1.1: 2^(nlen/2) < d.
    if key.d().bits() <= PRIME_BITS + 1 && *key.d() <= (BigUint::from(1u8) << PRIME_BITS) {
        return Ok(None);
    }

    let n_be = key.n().to_bytes_be();
    let e_be = key.e().to_bytes_be();
    let d_be = Zeroizing::new(key.d().to_bytes_be());
    let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), key.crt_coefficient()) else {
        return Err(RsaKeygenError::Assembly("CRT values missing"));
    };
    let qinv = Zeroizing::new(qinv);
    let dp_be = Zeroizing::new(dp.to_bytes_be());
    let dq_be = Zeroizing::new(dq.to_bytes_be());
    let qinv_be = Zeroizing::new(qinv.to_bytes_be());
    let primes = key.primes();
    let (Some(kp), Some(kq)) = (primes.first(), primes.get(1)) else {
        return Err(RsaKeygenError::Assembly("primes missing"));
    };
    let kp_be = Zeroizing::new(kp.to_bytes_be());
    let kq_be = Zeroizing::new(kq.to_bytes_be());

    // RSAPrivateKey ::= SEQUENCE { version 0, n, e, d, p, q, dp, dq, qinv }
    // (RFC 8017 A.1.2), the same fields and order as x509.MarshalPKCS1PrivateKey.
    let pkcs1_key = pkcs1::RsaPrivateKey {
        modulus: UintRef::new(&n_be)?,
        public_exponent: UintRef::new(&e_be)?,
        private_exponent: UintRef::new(&d_be)?,
        prime1: UintRef::new(&kp_be)?,
        prime2: UintRef::new(&kq_be)?,
        exponent1: UintRef::new(&dp_be)?,
        exponent2: UintRef::new(&dq_be)?,
        coefficient: UintRef::new(&qinv_be)?,
        other_prime_infos: None,
    };
    let len = usize::try_from(pkcs1_key.encoded_len()?)?;
    let mut der = Zeroizing::new(vec![0u8; len]);
    let written = pkcs1_key.encode_to_slice(&mut der)?.len();
    if written != len {
        return Err(RsaKeygenError::Assembly("DER length mismatch"));
    }
    Ok(Some(der))
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests draw real randomness and run openssl"
)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    // -----------------------------------------------------------------------
    // Helpers: a seeded test RNG and conversions to the reference big integer
    // (num-bigint-dig's BigUint, as re-exported by the rsa crate).
    // -----------------------------------------------------------------------

    /// splitmix64: deterministic, for reproducible vectors and bases.
    struct TestRng(u64);

    impl TestRng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn fill(&mut self, dest: &mut [u8]) -> bool {
            for b in dest.iter_mut() {
                *b = self.next() as u8;
            }
            true
        }

        fn limbs<const N: usize>(&mut self) -> [u64; N] {
            let mut x = [0u64; N];
            for l in x.iter_mut() {
                *l = self.next();
            }
            x
        }
    }

    fn big<const N: usize>(x: &[u64; N]) -> BigUint {
        BigUint::from_bytes_be(&limbs_to_be(x))
    }

    fn limbs<const N: usize>(x: &BigUint) -> [u64; N] {
        let bytes = x.to_bytes_be();
        assert!(bytes.len() <= 8 * N, "value too large for {N} limbs");
        limbs_from_be(&bytes)
    }

    fn from_hex<const N: usize>(hex: &str) -> [u64; N] {
        let Some(x) = BigUint::parse_bytes(hex.as_bytes(), 16) else {
            panic!("bad hex {hex}");
        };
        limbs(&x)
    }

    fn r_mod<const N: usize>(n: &BigUint) -> BigUint {
        (BigUint::from(1u8) << (64 * N)) % n
    }

    /// x mod n for a random x: reduces a random N-limb value.
    fn random_below<const N: usize>(rng: &mut TestRng, n: &BigUint) -> [u64; N] {
        let x: [u64; N] = rng.limbs();
        limbs(&(big(&x) % n))
    }

    // 2048-bit primes from `openssl prime -generate -bits 2048 -hex`.
    const P2048_A: &str = concat!(
        "EDDBB609FDA5DCB9FDA351F5A0D1400473117DD884270018A8A6298764FBBDC9",
        "E6D3B70D8A2A4B6E48379CF84EEB5B41043DB62141EB02AF59CDA869308B02C0",
        "818170082EB7DC34A35E4623532DA73E15ADDA12C8219A50792E225708F13FE4",
        "D81BC11E554304E586E60DCCD350C3DC67D2C6A00CED1CC370D88C26E8F73C75",
        "13ED9001F642094CBFDBD96E84CE27743AE922518C83D5464A5F2FEE80EDDAF0",
        "917081D115ADCCE7FEA1DBAA957B96E0AB56511936CA7CD084B09713C962533A",
        "D92D2177A2A9E85D010C919EA8743FD0DA763FED724AB1883A45752893D6E0FE",
        "DCF55591D9EC92668EB5BD830B9BF60BEB885AE8739C18F2986881B1B58D185D",
    );
    const P2048_B: &str = concat!(
        "C4AA11EC9134C3DF6EA90DEC5F9E569D68EBE3969BBAD905E149223A6AE2C9E9",
        "228BE7CE35CF3F17488E0138534769357D418B34B9F6A1EEA921779904D3E690",
        "0FC22DDAD7D597A75914986B0733ADA56074703A215ABE7D53AC8330EE368368",
        "9786B6C7D39D2D50F029BC51700BAB669FEA1266E42BD92AD572F7288DEF998C",
        "9D2BDC0F6BE1BE45B1610C1B9E13502B0B4E117B5B095C30FD3CF0D95E019D2F",
        "35C4F9E93DE5EB15E64A29DF0C1CA8B9580553CA93B1697A950B61FBC083B860",
        "60E4217E343BC1638303B2E054F4975AD9F3DEC20EF64BFE2FD112298DA0C568",
        "C21DED715BD9CB28E9003E63EECBE59ACD9AB56FB9FBE72EF3AFCDD087C6A0C3",
    );
    // 1024-bit primes from `openssl prime -generate -bits 1024 -hex`.
    const P1024_A: &str = concat!(
        "C370260549269FE0170F41E2753E6A200E7F8FB1B15C246591257C224849BCFF",
        "CC654039C52818734E1556C944A47E0C2558C89A7DD5111E34984AF8E8075C68",
        "9A1D3B419E5A7387DB7D00779675E059627DCAE1DEA09199D946C48A38ACCD8E",
        "1A3B5275FDDB643C1FB2A771D0C852E9D6F2A8945FCF91385E47C8CC81AE1553",
    );
    const P1024_B: &str = concat!(
        "CB4ED03B1794F14631D702E704A59FB0C6931807EC41601AE712FE7116BFEC0F",
        "663409CED787F6AAD72F77890A326D4BA597BC420293F0AED12C0B308DF3C005",
        "4853BCBE987D3F0FA0719D1607560FD9D69C7D4CB2C9163F0ECA406096193EFC",
        "528ABD6365E19BBC7C7A570F5391326D89247B3FB5186F9CFD1F235DC7D011B1",
    );

    // -----------------------------------------------------------------------
    // Montgomery arithmetic against the reference.
    // -----------------------------------------------------------------------

    fn check_mont<const N: usize>(n: &[u64; N], rng: &mut TestRng, random_values: usize) {
        let Some(mont) = Mont::new(n) else {
            panic!("modulus rejected");
        };
        let nb = big(n);
        let r = r_mod::<N>(&nb);
        assert_eq!(big(&mont.one), r, "R mod n");
        assert_eq!(big(&mont.r_squared()), (&r * &r) % &nb, "R^2 mod n");
        // n0inv: n·n0inv ≡ −1 mod 2^64
        assert_eq!(n[0].wrapping_mul(mont.n0inv), u64::MAX);

        let mut values: Vec<[u64; N]> = Vec::new();
        let one = BigUint::from(1u8);
        let two = BigUint::from(2u8);
        for v in [
            BigUint::from(0u8),
            one.clone(),
            two.clone(),
            &nb - &one,
            &nb - &two,
        ] {
            values.push(limbs(&(v % &nb)));
        }
        for _ in 0..random_values {
            values.push(random_below(rng, &nb));
        }
        for a in &values {
            let ab = big(a);
            // double
            assert_eq!(big(&mont.double(a)), (&ab * 2u8) % &nb, "double");
            for b in &values {
                let bb = big(b);
                let got = big(&mont.mul(a, b));
                // got·R ≡ a·b (mod n), and got < n
                assert!(got < nb, "result not reduced");
                assert_eq!((&got * &r) % &nb, (&ab * &bb) % &nb, "mul");
            }
            assert_eq!(
                big(&mont.out_of_mont(&mont.sqr(&mont.mul(a, &mont.r_squared())))),
                (&ab * &ab) % &nb,
                "sqr round trip"
            );
        }
    }

    fn check_pow<const N: usize>(n: &[u64; N], rng: &mut TestRng, count: usize) {
        let Some(mont) = Mont::new(n) else {
            panic!("modulus rejected");
        };
        let nb = big(n);
        let r2 = mont.r_squared();
        let mut exps: Vec<[u64; N]> = vec![[0u64; N], [u64::MAX; N]];
        let mut e1 = [0u64; N];
        e1[0] = 1;
        exps.push(e1);
        let mut e16 = [0u64; N];
        e16[0] = 16;
        exps.push(e16);
        for _ in 0..count {
            let mut e: [u64; N] = rng.limbs();
            // vary the length too
            let keep = (rng.next() as usize) % (64 * N) + 1;
            for i in keep..64 * N {
                e[i / 64] &= !(1u64 << (i % 64));
            }
            exps.push(e);
        }
        for e in &exps {
            let eb = big(e);
            let a: [u64; N] = random_below(rng, &nb);
            let want = big(&a).modpow(&eb, &nb);
            let got = mont.out_of_mont(&mont.pow(&mont.mul(&a, &r2), e));
            assert_eq!(big(&got), want, "pow");
            let want2 = BigUint::from(2u8).modpow(&eb, &nb);
            assert_eq!(big(&mont.out_of_mont(&mont.pow2(e))), want2, "pow2");
        }
    }

    #[test]
    fn montgomery_rejects_even_and_tiny_moduli() {
        assert!(Mont::new(&[4u64]).is_none());
        assert!(Mont::new(&[1u64]).is_none());
        assert!(Mont::new(&[0u64, 1]).is_none());
        assert!(Mont::new(&[3u64]).is_some());
    }

    #[test]
    fn montgomery_one_limb_edge_moduli() {
        let mut rng = TestRng(1);
        for n in [
            3u64,
            5,
            7,
            65537,
            u64::MAX,
            u64::MAX - 2,
            (1 << 63) + 1,
            0xFFFF_FFFF_0000_0001,
        ] {
            check_mont::<1>(&[n], &mut rng, 20);
            check_pow::<1>(&[n], &mut rng, 10);
        }
        for _ in 0..50 {
            let n = rng.next() | 1;
            if n > 3 {
                check_mont::<1>(&[n], &mut rng, 5);
                check_pow::<1>(&[n], &mut rng, 3);
            }
        }
    }

    #[test]
    fn montgomery_multi_limb_edge_moduli() {
        let mut rng = TestRng(2);
        // all ones; top bit only plus one; small value in wide limbs; zero middle limbs
        check_mont::<2>(&[u64::MAX, u64::MAX], &mut rng, 10);
        check_mont::<2>(&[1, 1 << 63], &mut rng, 10);
        check_mont::<4>(&[u64::MAX; 4], &mut rng, 10);
        check_mont::<4>(&[0xFFFF_FFFF_FFFF_FFC5, 0, 0, 0], &mut rng, 10);
        check_mont::<4>(&[1, 0, 0, 1 << 63], &mut rng, 10);
        check_mont::<4>(&[3, 0, 0, 0], &mut rng, 10);
        check_pow::<4>(&[1, 0, 0, 1 << 63], &mut rng, 5);
        check_pow::<4>(&[u64::MAX; 4], &mut rng, 5);
        for _ in 0..10 {
            let mut n: [u64; 4] = rng.limbs();
            n[0] |= 1;
            check_mont::<4>(&n, &mut rng, 4);
            check_pow::<4>(&n, &mut rng, 2);
        }
    }

    #[test]
    fn montgomery_2048_bit_moduli() {
        let mut rng = TestRng(3);
        let p: [u64; LIMBS] = from_hex(P2048_A);
        check_mont::<LIMBS>(&p, &mut rng, 3);
        check_pow::<LIMBS>(&p, &mut rng, 1);
        let mut ones = [u64::MAX; LIMBS];
        check_mont::<LIMBS>(&ones, &mut rng, 2);
        ones[LIMBS - 1] = 1 << 63;
        ones[0] = 1;
        check_mont::<LIMBS>(&ones, &mut rng, 2);
        let mut random: [u64; LIMBS] = rng.limbs();
        random[0] |= 1;
        random[LIMBS - 1] |= 0xC000_0000_0000_0000;
        check_mont::<LIMBS>(&random, &mut rng, 2);
        check_pow::<LIMBS>(&random, &mut rng, 1);
    }

    #[test]
    fn limb_helpers() {
        let x: [u64; 2] = from_hex("0102030405060708090a0b0c0d0e0f10");
        assert_eq!(x, [0x090a_0b0c_0d0e_0f10, 0x0102_0304_0506_0708]);
        assert_eq!(bit_len(&x), 121);
        assert_eq!(bit_len(&[0u64; 3]), 0);
        assert_eq!(add_small(&[u64::MAX, 5], 1), Some([0, 6]));
        assert_eq!(add_small(&[u64::MAX, u64::MAX], 1), None);
        assert_eq!(sub_limbs(&[0u64, 1], &[1u64, 0]), ([u64::MAX, 0], 0));
        assert_eq!(sub_limbs(&[0u64, 0], &[1u64, 0]).1, 1);
        let mut rng = TestRng(4);
        for _ in 0..100 {
            let v: [u64; LIMBS] = rng.limbs();
            let p = (rng.next() % 65_536) as u32 | 1;
            let want = big(&v) % BigUint::from(p);
            assert_eq!(BigUint::from(rem_small(&v, p)), want);
        }
    }

    // -----------------------------------------------------------------------
    // Primality.
    // -----------------------------------------------------------------------

    fn probable_prime<const N: usize>(w: &[u64; N], seed: u64) -> bool {
        let mut rng = TestRng(seed);
        match is_probable_prime(w, &mut |d| rng.fill(d)) {
            Ok(answer) => answer,
            Err(Stopped) => panic!("test rng stopped"),
        }
    }

    fn base2<const N: usize>(w: &[u64; N]) -> bool {
        match MillerRabin::new(w) {
            Some(mr) => mr.passes_base2(),
            None => panic!("rejected"),
        }
    }

    #[test]
    fn known_small_primes_and_composites() {
        let sieve = sieve_primes();
        let primes = &sieve.primes;
        assert_eq!(primes.first(), Some(&3));
        assert_eq!(primes.iter().filter(|&&p| p == 65537).count(), 1);
        assert!(primes.iter().all(|&p| p < SIEVE_BOUND || p == 65537));
        if SIEVE_BOUND == 1 << 20 {
            assert_eq!(primes.len(), 82_025 - 1); // π(2^20), less the prime 2
            assert_eq!(primes.last(), Some(&1_048_573));
        }
        for (&p, &recip) in primes.iter().zip(&sieve.recips) {
            assert_eq!(recip, u64::MAX / u64::from(p));
        }
        assert!(primes.windows(2).all(|w| w[0] < w[1]));
        // Compare the test on every odd number below 5000 with trial division.
        for w in (1u64..5000).step_by(2) {
            let prime = w > 1 && (2..w).take_while(|d| d * d <= w).all(|d| w % d != 0);
            assert_eq!(probable_prime(&[w], w), prime, "{w}");
        }
        assert!(!probable_prime(&[0u64], 1));
        assert!(probable_prime(&[2u64], 1));
        assert!(!probable_prime(&[4u64], 1));
        // Largest 64-bit prime, 2^61 − 1, 65537.
        for p in [18_446_744_073_709_551_557u64, (1 << 61) - 1, 65537] {
            assert!(probable_prime(&[p], 9), "{p}");
        }
    }

    #[test]
    fn carmichael_numbers_are_composite() {
        for c in [
            561u64,
            1105,
            1729,
            2465,
            2821,
            6601,
            8911,
            41041,
            62745,
            825_265,
            321_197_185,
        ] {
            // Fermat liars for every base coprime to c ...
            let (cb, one) = (BigUint::from(c), BigUint::from(1u8));
            assert_eq!(BigUint::from(2u8).modpow(&(&cb - &one), &cb), one, "{c}");
            // ... but Miller–Rabin finds them out.
            assert!(!probable_prime(&[c], c), "{c}");
        }
        // A 192-bit Chernick Carmichael number (6k+1)(12k+1)(18k+1), k = 1380521752234168700.
        let k = BigUint::from(1_380_521_752_234_168_700u64);
        let c = (&k * 6u8 + 1u8) * (&k * 12u8 + 1u8) * (&k * 18u8 + 1u8);
        let one = BigUint::from(1u8);
        assert_eq!(
            BigUint::from(2u8).modpow(&(&c - &one), &c),
            one,
            "Fermat pseudoprime"
        );
        let w: [u64; 3] = limbs(&c);
        assert!(!probable_prime(&w, 5));
    }

    #[test]
    fn strong_pseudoprimes_to_base_2_fail_random_bases() {
        // OEIS A001262 and the record spsp(2..) values from Jaeschke / Zhang.
        let small = [
            2047u64,
            3277,
            4033,
            4681,
            8321,
            15841,
            29341,
            42799,
            49141,
            52633,
            65281,
            74665,
            80581,
            85489,
            88357,
            90751,
            3_825_123_056_546_413_051,
        ];
        for n in small {
            assert!(base2(&[n]), "{n} should be a strong pseudoprime to base 2");
            assert!(!probable_prime(&[n], n), "{n}");
        }
        for dec in ["318665857834031151167461", "3317044064679887385961981"] {
            let Some(n) = BigUint::parse_bytes(dec.as_bytes(), 10) else {
                panic!("decimal");
            };
            let n: [u64; 2] = limbs(&n);
            assert!(base2(&n), "{dec}");
            assert!(!probable_prime(&n, 77), "{dec}");
        }
        // An 801-bit p·(2p−1) strong pseudoprime to base 2, found for this test.
        let p = BigUint::parse_bytes(
            concat!(
                "bc13f60d87290743aee7f33143b4386744fb20dd0a16727db7c819d87cb7526d",
                "5f71ab337ffd338ce24b744da518a0a677c1"
            )
            .as_bytes(),
            16,
        );
        let Some(p) = p else { panic!("hex") };
        let n = &p * (&p * 2u8 - 1u8);
        let w: [u64; 13] = limbs(&n);
        assert_eq!(bit_len(&w), 801);
        assert!(base2(&w));
        assert!(!probable_prime(&w, 3));
    }

    #[test]
    fn large_known_primes_and_composites() {
        let one = BigUint::from(1u8);
        let m127: [u64; 2] = limbs(&((&one << 127) - &one));
        assert!(probable_prime(&m127, 1));
        let m521: [u64; 9] = limbs(&((&one << 521) - &one));
        assert!(probable_prime(&m521, 1));
        let m1279: [u64; 20] = limbs(&((&one << 1279) - &one));
        assert!(probable_prime(&m1279, 1));
        // 2^1277 − 1 is composite (Lucas–Lehmer) though no factor of it is known.
        let m1277: [u64; 20] = limbs(&((&one << 1277) - &one));
        assert!(!probable_prime(&m1277, 1));

        let a: [u64; 16] = from_hex(P1024_A);
        let b: [u64; 16] = from_hex(P1024_B);
        assert!(probable_prime(&a, 2));
        assert!(probable_prime(&b, 2));
        let p: [u64; LIMBS] = from_hex(P2048_A);
        let q: [u64; LIMBS] = from_hex(P2048_B);
        assert!(probable_prime(&p, 2));
        assert!(probable_prime(&q, 3));
        let n: [u64; LIMBS] = limbs(&(big(&a) * big(&b)));
        assert_eq!(bit_len(&n), 2048);
        assert!(!base2(&n));
        assert!(!probable_prime(&n, 4));
        // P2048_A + 2 is composite (`openssl prime` agrees).
        let Some(p2) = add_small(&p, 2) else {
            panic!("overflow")
        };
        assert!(!probable_prime(&p2, 6));
    }

    #[test]
    fn random_bases_stop_when_the_source_stops() {
        let p: [u64; 16] = from_hex(P1024_A);
        let mut no_rng = |_: &mut [u8]| false;
        assert!(is_probable_prime(&p, &mut no_rng).is_err());
    }

    // -----------------------------------------------------------------------
    // Sieve and pair selection.
    // -----------------------------------------------------------------------

    #[test]
    fn sieve_marks_exactly_the_small_factors_and_65537_residue_one() {
        let sieve = sieve_primes();
        let mut rng = TestRng(5);
        let mut start: [u64; LIMBS] = rng.limbs();
        start[0] |= 1;
        start[LIMBS - 1] |= 0xC000_0000_0000_0000;
        // Barrett residues against plain division.
        let mut rems = Vec::new();
        residues(&start, &sieve, &mut rems);
        let want: Vec<u32> = sieve.primes.iter().map(|&p| rem_small(&start, p)).collect();
        assert_eq!(rems, want);
        // A start with residue 0 for every prime, and all-ones limbs.
        residues(&[0u64; LIMBS], &sieve, &mut rems);
        assert!(rems.iter().all(|&r| r == 0));
        let ones = [u64::MAX; LIMBS];
        residues(&ones, &sieve, &mut rems);
        let want: Vec<u32> = sieve.primes.iter().map(|&p| rem_small(&ones, p)).collect();
        assert_eq!(rems, want);

        let mut bitmap = vec![0u64; WINDOW / 64];
        sieve_window(&start, &sieve, &mut rems, &mut bitmap);
        let start_rems: Vec<u64> = want_rems(&start, &sieve);
        let has_small_factor = |i: usize| {
            sieve.primes.iter().zip(&start_rems).any(|(&p, &r)| {
                let p = u64::from(p);
                let rem = (r + 2 * i as u64) % p;
                rem == 0 || (p == 65537 && rem == 1)
            })
        };
        let mut survivors = 0;
        for i in 0..WINDOW {
            let marked = bitmap[i / 64] >> (i % 64) & 1 == 1;
            // Every survivor, and the first 1024 offsets, checked in full.
            if !marked || i < 1024 {
                assert_eq!(marked, has_small_factor(i), "offset {i}");
            }
            survivors += usize::from(!marked);
        }
        // Mertens: ∏(1 − 1/p) over odd p < B ≈ 1.12 / ln B of odd numbers survive.
        let expected = 1.1229 / f64::from(SIEVE_BOUND).ln() * WINDOW as f64;
        let ratio = survivors as f64 / expected;
        assert!((0.85..1.15).contains(&ratio), "{survivors} vs {expected}");
    }

    fn want_rems(x: &[u64; LIMBS], sieve: &SievePrimes) -> Vec<u64> {
        sieve
            .primes
            .iter()
            .map(|&p| u64::from(rem_small(x, p)))
            .collect()
    }

    #[test]
    fn far_apart_uses_2_to_the_1948() {
        let zero = [0u64; LIMBS];
        let mut bound = [0u64; LIMBS];
        bound[1948 / 64] = 1 << (1948 % 64);
        assert!(!far_apart(&zero, &bound));
        assert!(!far_apart(&bound, &zero));
        let Some(above) = add_small(&bound, 1) else {
            panic!()
        };
        assert!(far_apart(&zero, &above));
        assert!(far_apart(&above, &zero));
        assert!(!far_apart(&above, &above));
    }

    // -----------------------------------------------------------------------
    // Whole keys. Key generation is slow in the unoptimised test profile, so
    // one key is generated and shared by these tests.
    // -----------------------------------------------------------------------

    fn test_key() -> &'static [u8] {
        static KEY: OnceLock<Zeroizing<Vec<u8>>> = OnceLock::new();
        KEY.get_or_init(
            || match generate_rsa4096(&ring::rand::SystemRandom::new()) {
                Ok(der) => der,
                Err(e) => panic!("key generation failed: {e}"),
            },
        )
    }

    fn pem_of(der: &[u8]) -> String {
        pem::encode_config(
            &pem::Pem::new("RSA PRIVATE KEY", der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    #[test]
    fn key_fields_meet_fips_186_5() {
        use pkcs1::der::Decode;
        let der = test_key();
        let key = match pkcs1::RsaPrivateKey::from_der(der) {
            Ok(k) => k,
            Err(e) => panic!("not PKCS#1: {e}"),
        };
        assert_eq!(key.version(), pkcs1::Version::TwoPrime);
        let b = |u: pkcs1::UintRef<'_>| BigUint::from_bytes_be(u.as_bytes());
        let (n, e, d) = (
            b(key.modulus),
            b(key.public_exponent),
            b(key.private_exponent),
        );
        let (p, q) = (b(key.prime1), b(key.prime2));
        let (dp, dq, qinv) = (b(key.exponent1), b(key.exponent2), b(key.coefficient));
        let one = BigUint::from(1u8);
        assert_eq!(n.bits(), 4096);
        assert_eq!(e, BigUint::from(65537u32));
        assert_eq!(&p * &q, n);
        assert!(p > q);
        for x in [&p, &q] {
            assert_eq!(x.bits(), 2048);
            assert!(*x >= (BigUint::from(3u8) << 2046), "top two bits set");
            let w: [u64; LIMBS] = limbs(x);
            assert!(probable_prime(&w, 42));
            assert_ne!(x % 65537u32, one, "gcd(e, p-1) = 1");
        }
        assert!(&p - &q > (BigUint::from(1u8) << 1948), "|p - q| > 2^1948");
        let p1 = &p - &one;
        let q1 = &q - &one;
        let lcm = num_lcm(&p1, &q1);
        assert!(d < lcm, "d < lcm(p-1, q-1)");
        assert!(d > (BigUint::from(1u8) << 2048), "d > 2^2048");
        assert_eq!((&e * &d) % &lcm, one);
        assert_eq!(dp, &d % &p1);
        assert_eq!(dq, &d % &q1);
        assert_eq!((&qinv * &q) % &p, one);
        assert!(qinv < p);
    }

    fn num_gcd(a: &BigUint, b: &BigUint) -> BigUint {
        let (mut a, mut b) = (a.clone(), b.clone());
        let zero = BigUint::from(0u8);
        while b != zero {
            let r = &a % &b;
            a = b;
            b = r;
        }
        a
    }

    fn num_lcm(a: &BigUint, b: &BigUint) -> BigUint {
        a * b / num_gcd(a, b)
    }

    #[test]
    fn ring_loads_signs_and_verifies() {
        use ring::signature::{self, KeyPair, RsaKeyPair};
        let der = test_key();
        let key = match RsaKeyPair::from_der(der) {
            Ok(k) => k,
            Err(e) => panic!("ring rejected the key: {e}"),
        };
        assert_eq!(key.public().modulus_len(), 512);
        let rng = ring::rand::SystemRandom::new();
        let msg = b"talvault service-account key";
        for (pad, verify) in [
            (
                &signature::RSA_PKCS1_SHA256 as &dyn signature::RsaEncoding,
                &signature::RSA_PKCS1_2048_8192_SHA256,
            ),
            (
                &signature::RSA_PSS_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ),
        ] {
            let mut sig = vec![0u8; key.public().modulus_len()];
            if let Err(e) = key.sign(pad, &rng, msg, &mut sig) {
                panic!("sign: {e}");
            }
            let public = signature::UnparsedPublicKey::new(verify, key.public_key().as_ref());
            assert!(public.verify(msg, &sig).is_ok());
            assert!(public.verify(b"other message", &sig).is_err());
        }
    }

    #[test]
    fn openssl_checks_the_pem() {
        let pem = pem_of(test_key());
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(!pem.contains('\r'));
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let (full, last) = body.split_at(body.len() - 1);
        assert!(full.iter().all(|l| l.len() == 64));
        assert!(last.iter().all(|l| !l.is_empty() && l.len() <= 64));

        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let path = dir.path().join("sa.key");
        if let Err(e) = std::fs::write(&path, &pem) {
            panic!("write: {e}");
        }
        let output = std::process::Command::new("openssl")
            .args(["rsa", "-check", "-noout", "-in"])
            .arg(&path)
            .output();
        match output {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "openssl failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(stdout.trim(), "RSA key ok");
            }
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("openssl is required when CI=true: {e}");
                }
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("skipping the openssl check: openssl not runnable ({e})");
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // Randomness handling.
    // -----------------------------------------------------------------------

    #[test]
    fn a_failing_rng_is_an_error() {
        let result = generate_with_workers(&|_: &mut [u8]| false, 2);
        assert!(matches!(result, Err(RsaKeygenError::Rng)), "{result:?}");
    }

    #[test]
    fn an_rng_failing_mid_search_is_an_error() {
        use std::sync::atomic::AtomicUsize;
        let calls = AtomicUsize::new(0);
        let fill = |d: &mut [u8]| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            d.fill(0x5A ^ n as u8);
            n < 3
        };
        let result = generate_with_workers(&fill, 2);
        assert!(matches!(result, Err(RsaKeygenError::Rng)), "{result:?}");
    }
}
