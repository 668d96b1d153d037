//! RSA-4096 key generation for the Talos service-account key (PKCS#1 DER out), composed from
//! RustCrypto `rsa` and `crypto-primes`; pure: no files, environment, clock or terminal, and
//! randomness only from the caller's `SecureRandom`. No arithmetic of our own lives here.
//!
//! `talosctl gen secrets` creates this key with Go's `rsa.GenerateKey(rand.Reader, 4096)` and
//! stores `x509.MarshalPKCS1PrivateKey`. ring cannot generate RSA keys. `rsa::PrivateKey::new`
//! could, but searches its two primes one after the other; the search is nearly all of the time,
//! so this module runs the same steps as rsa 0.10's own `generate_prime_with_rng`
//! (rsa `src/algorithms/generate.rs`) on two threads, one prime each:
//!
//! * a random 2048-bit start from the caller's generator (crypto-bigint `try_random_bits`, on the
//!   calling thread, so the generator need not be `Sync`), made odd with its top two bits set
//!   (crypto-primes `SetBits::TwoMsb`), so that n = p·q has exactly 4096 bits and
//!   p, q > √2·2^2047 (FIPS 186-5 A.1.3);
//! * crypto-primes' `SmallFactorsSieve` from that start and its `is_prime` (Miller–Rabin base 2
//!   plus a strong Lucas test, Baillie–PSW) on the survivors;
//! * `rsa::PrivateKey::from_p_q`, which computes d = e⁻¹ mod lcm(p−1, q−1) (FIPS 186-5
//!   A.1.1), dp, dq and qinv and validates the key, then rsa's PKCS#1 encoder.
//!
//! Secrets: the primes are `BoxedUint`s (zeroized on drop through `Zeroizing`), `rsa::PrivateKey`
//! wipes itself on drop, the DER comes back in `Zeroizing`. Temporaries inside crypto-bigint are
//! not ours to wipe.

use std::cmp::Ordering;
use std::num::NonZeroU32;

use crypto_primes::Flavor;
use crypto_primes::hazmat::SmallFactorsSieve;
use rand_core::{TryCryptoRng, TryRng};
use rsa::BoxedUint;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use zeroize::Zeroizing;

/// Bits in each prime factor.
const PRIME_BITS: u32 = 2048;
/// Bits in the modulus n = p·q.
const MODULUS_BITS: u32 = 2 * PRIME_BITS;
/// The public exponent, as Go's `rsa.GenerateKey` (F4).
const PUBLIC_EXPONENT: u64 = 65537;
/// FIPS 186-5 A.1.3 step 5.4: |p − q| > 2^(nlen/2 − 100).
const MIN_PRIME_DISTANCE_BITS: u32 = PRIME_BITS - 100;
/// Whole-key attempts before giving up. A retry needs gcd(e, p−1) ≠ 1 (about 2^-16), primes
/// too close together or d ≤ 2^2048 (both about 2^-100 or less), or a sieve that ran off the
/// end of the 2048-bit range.
const MAX_ATTEMPTS: usize = 8;

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
    Der(#[from] rsa::pkcs1::Error),
}

/// ring's `SecureRandom` seen through the fallible rand_core 0.10 traits that crypto-bigint and
/// rsa take (`TryRng` + `TryCryptoRng`): a failure of ring's source is an error, never a panic
/// and never a silently weak value.
struct RingRng<'a>(&'a dyn ring::rand::SecureRandom);

/// ring's generator reported a failure (it carries no detail: `ring::error::Unspecified`).
#[derive(Debug, thiserror::Error)]
#[error("the random number generator failed")]
struct RingRngFailed;

impl TryRng for RingRng<'_> {
    type Error = RingRngFailed;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst).map_err(|_| RingRngFailed)
    }
}

// ring's SecureRandom is the operating system's CSPRNG (getrandom), fit for key generation.
impl TryCryptoRng for RingRng<'_> {}

/// Generates an RSA-4096 key (e = 65537) and returns its PKCS#1 RSAPrivateKey DER.
///
/// The result has the form of Go's `x509.MarshalPKCS1PrivateKey` of a key from
/// `rsa.GenerateKey(rand.Reader, 4096)`: two-prime, version 0, p > q (a common convention; Go does
/// not sort), d = e⁻¹ mod lcm(p−1, q−1) as FIPS 186-5 A.1.1 requires (Go reduces modulo
/// (p−1)(q−1); both are valid private exponents for the same key).
///
/// All randomness comes from `rng`, drawn on the calling thread while two threads search.
pub fn generate_rsa4096(
    rng: &dyn ring::rand::SecureRandom,
) -> Result<Zeroizing<Vec<u8>>, RsaKeygenError> {
    generate_with(&mut RingRng(rng))
}

/// Key generation with any fallible cryptographic generator, so that tests can make it fail.
fn generate_with<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, RsaKeygenError> {
    for _ in 0..MAX_ATTEMPTS {
        let (a, b) = std::thread::scope(|scope| -> Result<_, RsaKeygenError> {
            let start_a = random_start(rng)?;
            let start_b = random_start(rng)?;
            let search_b = scope.spawn(move || prime_from(start_b));
            let a = prime_from(start_a);
            let b = search_b.join().map_err(|_| RsaKeygenError::Worker)?;
            Ok((a, b))
        })?;
        let (Some(a), Some(b)) = (a, b) else {
            // A sieve reached 2^2048 without a prime (no prime in its window): start again.
            continue;
        };
        if let Some(der) = assemble(a, b)? {
            return Ok(der);
        }
    }
    Err(RsaKeygenError::Assembly(
        "no valid key after repeated attempts",
    ))
}

/// A random odd 2048-bit start with its top two bits set, as rsa's `generate_prime_with_rng`
/// and crypto-primes' `random_odd_integer(.., SetBits::TwoMsb)` make it (the latter needs an
/// infallible generator, hence the fallible draw here).
fn random_start<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
) -> Result<Zeroizing<BoxedUint>, RsaKeygenError> {
    use crypto_bigint::{BitOps as _, RandomBits as _};
    let mut start = Zeroizing::new(
        BoxedUint::try_random_bits(rng, PRIME_BITS).map_err(|_| RsaKeygenError::Rng)?,
    );
    start.set_bit_vartime(0, true);
    start.set_bit_vartime(PRIME_BITS - 1, true);
    start.set_bit_vartime(PRIME_BITS - 2, true);
    Ok(start)
}

/// The first probable prime at or after `start` (crypto-primes' sieve and Baillie–PSW test), or
/// `None` when the sieve runs past 2048 bits first.
fn prime_from(start: Zeroizing<BoxedUint>) -> Option<Zeroizing<BoxedUint>> {
    let bits = NonZeroU32::new(PRIME_BITS)?;
    let mut sieve = SmallFactorsSieve::new(BoxedUint::clone(&start), bits, false).ok()?;
    sieve
        .find(|candidate| crypto_primes::is_prime(Flavor::Any, candidate))
        .map(Zeroizing::new)
}

/// Builds the key from two primes and encodes it; `Ok(None)` asks for new primes.
fn assemble(
    a: Zeroizing<BoxedUint>,
    b: Zeroizing<BoxedUint>,
) -> Result<Option<Zeroizing<Vec<u8>>>, RsaKeygenError> {
    let (p, q) = match a.cmp(&b) {
        Ordering::Greater => (a, b),
        Ordering::Less => (b, a),
        Ordering::Equal => return Ok(None),
    };
    // FIPS 186-5 A.1.3 step 5.4: p and q must not be too close (a comparison of the difference
    // that crypto-bigint computes).
    if p.wrapping_sub(&*q).bit_width() <= MIN_PRIME_DISTANCE_BITS {
        return Ok(None);
    }
    // from_p_q fails when e is not invertible modulo lcm(p−1, q−1) (p or q ≡ 1 mod e): new primes.
    let Ok(key) = rsa::PrivateKey::from_p_q(
        BoxedUint::clone(&p),
        BoxedUint::clone(&q),
        BoxedUint::from(PUBLIC_EXPONENT),
    ) else {
        return Ok(None);
    };
    // FIPS 186-5 A.1.1: 2^(nlen/2) < d; otherwise choose new primes.
    if key.d().bit_width() <= PRIME_BITS {
        return Ok(None);
    }
    if key.n().as_ref().bit_width() != MODULUS_BITS {
        return Err(RsaKeygenError::Assembly("modulus is not 4096 bits"));
    }
    if *key.e() != BoxedUint::from(PUBLIC_EXPONENT) {
        return Err(RsaKeygenError::Assembly("unexpected public exponent"));
    }
    // RSAPrivateKey ::= SEQUENCE { version 0, n, e, d, p, q, dp, dq, qinv } (RFC 8017 A.1.2),
    // the same fields and order as x509.MarshalPKCS1PrivateKey; SecretDocument wipes on drop.
    let document = key.to_pkcs1_der()?;
    let der = Zeroizing::new(document.as_bytes().to_vec());
    // Round trip through an independent parser: ring (which signs with it) must accept it.
    ring::signature::RsaKeyPair::from_der(&der)
        .map_err(|_| RsaKeygenError::Assembly("ring rejected the generated key"))?;
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

    // Key generation takes a while: one key is generated and shared by these tests.
    fn test_key() -> &'static [u8] {
        static KEY: OnceLock<Zeroizing<Vec<u8>>> = OnceLock::new();
        KEY.get_or_init(
            || match generate_rsa4096(&ring::rand::SystemRandom::new()) {
                Ok(der) => der,
                Err(e) => panic!("key generation failed: {e}"),
            },
        )
    }

    fn big(bytes: &[u8]) -> BoxedUint {
        BoxedUint::from_be_slice_vartime(bytes)
    }

    /// The result checks the old hand-written generator had, on the key through an independent
    /// PKCS#1 parser (the `pkcs1` crate) and crypto-primes' primality test.
    #[test]
    fn key_fields_meet_fips_186_5() {
        use rsa::pkcs1::der::Decode as _;
        let der = test_key();
        let key = rsa::pkcs1::RsaPrivateKeyRef::from_der(der).unwrap();
        assert_eq!(key.version(), rsa::pkcs1::Version::TwoPrime);
        let n = big(key.modulus.as_bytes());
        let e = big(key.public_exponent.as_bytes());
        let d = big(key.private_exponent.as_bytes());
        let p = big(key.prime1.as_bytes());
        let q = big(key.prime2.as_bytes());
        assert_eq!(n.bit_width(), 4096);
        assert_eq!(e, BoxedUint::from(65537u64));
        assert!(p > q);
        for x in [&p, &q] {
            assert_eq!(x.bit_width(), 2048);
            assert!(
                x.bit_vartime(2047) && x.bit_vartime(2046),
                "top two bits set"
            );
            assert!(crypto_primes::is_prime(Flavor::Any, x));
        }
        assert!(p.wrapping_sub(&q).bit_width() > 1948, "|p - q| > 2^1948");
        assert!(d.bit_width() > 2048, "d > 2^2048");
        // n = p·q and the CRT values are checked by rsa's own validation and by ring and openssl
        // below; recomputing them here would be arithmetic of our own.
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        let parsed = rsa::PrivateKey::from_pkcs1_der(der).unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.n().as_ref().bit_width(), 4096);
    }

    #[test]
    fn ring_loads_signs_and_verifies() {
        use ring::signature::{self, KeyPair, RsaKeyPair};
        let key = RsaKeyPair::from_der(test_key()).unwrap();
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
            key.sign(pad, &rng, msg, &mut sig).unwrap();
            let public = signature::UnparsedPublicKey::new(verify, key.public_key().as_ref());
            assert!(public.verify(msg, &sig).is_ok());
            assert!(public.verify(b"other message", &sig).is_err());
        }
    }

    #[test]
    fn openssl_checks_the_pem() {
        let pem = crate::keys::pem_encode(crate::keys::LABEL_RSA, test_key());
        let pem = String::from_utf8(pem.to_vec()).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        std::fs::write(&path, &pem).unwrap();
        let output = std::process::Command::new("openssl")
            .args(["rsa", "-check", "-noout", "-in"])
            .arg(&path)
            .output();
        match output {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "openssl failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "RSA key ok");
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

    /// A generator that gives `good` bytes' worth of data, then fails.
    struct Failing {
        good: usize,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("test generator failed")]
    struct TestFailure;

    impl TryRng for Failing {
        type Error = TestFailure;
        fn try_next_u32(&mut self) -> Result<u32, TestFailure> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, TestFailure> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), TestFailure> {
            if dst.len() > self.good {
                return Err(TestFailure);
            }
            self.good -= dst.len();
            dst.fill(0x5a);
            Ok(())
        }
    }

    impl TryCryptoRng for Failing {}

    #[test]
    fn a_failing_rng_is_an_error() {
        let result = generate_with(&mut Failing { good: 0 });
        assert!(matches!(result, Err(RsaKeygenError::Rng)), "{result:?}");
    }

    #[test]
    fn an_rng_failing_after_the_first_prime_start_is_an_error() {
        // Enough for the first start (256 bytes), not for the second.
        let result = generate_with(&mut Failing { good: 300 });
        assert!(matches!(result, Err(RsaKeygenError::Rng)), "{result:?}");
    }
}
