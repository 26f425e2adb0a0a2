//! Password hashes (Argon2id, PHC strings) and their verification with bounded memory.
//!
//! One Argon2 check with the default parameters fills 19 MiB. Allocating that per check lets
//! a burst of failed sign-ins leave the process hundreds of MiB larger (the allocator keeps
//! what it got), so checks run on a fixed number of reusable memory buffers, at most that
//! many at once, with a bounded queue behind them: a caller that finds the queue full is
//! told to come back later instead of waiting without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The most Argon2 memory one stored hash may ask for (64 MiB): a hash with a larger cost
/// parameter is treated as not matching rather than allowed to allocate without bound.
const MAX_BLOCKS: usize = 64 * 1024;

/// Hashes a new password with Argon2id's default parameters.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

/// Every verification slot is taken and the queue behind them is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub retry_after: Duration,
}

pub struct PasswordVerifier {
    permits: tokio::sync::Semaphore,
    buffers: Mutex<Vec<Vec<Block>>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Checked when the account does not exist, so that an unknown name costs as much
    /// time as a wrong password: same parameters, a random salt and output nobody knows.
    decoy: String,
}

impl PasswordVerifier {
    /// At most `concurrent` checks at once (each keeps its buffer once used), and at most
    /// `max_waiting` callers queued behind them.
    pub fn new(concurrent: usize, max_waiting: usize) -> Self {
        let concurrent = concurrent.max(1);
        let params = Params::default();
        let salt = SaltString::generate(&mut OsRng);
        let mut output = [0u8; 32];
        aws_lc_rs::rand::fill(&mut output).expect("the system random number generator failed");
        let decoy = format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            salt.as_str(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, output)
        );
        Self {
            permits: tokio::sync::Semaphore::new(concurrent),
            buffers: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            max_waiting,
            decoy,
        }
    }

    /// Whether `password` matches `stored` (a PHC string). `None` for an account that does
    /// not exist: the decoy is checked instead, and the answer is `false`.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> Result<bool, Busy> {
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        if queued >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy { retry_after: Duration::from_secs(1) });
        }
        let permit = self.permits.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(_permit) = permit else { return Err(Busy { retry_after: Duration::from_secs(1) }) };
        let mut buffer = self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        let hash = stored.unwrap_or(&self.decoy).to_owned();
        let password = password.to_owned();
        let (matches, buffer) = tokio::task::spawn_blocking(move || {
            let matches = verify_with(&hash, password.as_bytes(), &mut buffer);
            (matches, buffer)
        })
        .await
        .unwrap_or_else(|_| (false, Vec::new()));
        self.buffers.lock().unwrap_or_else(|p| p.into_inner()).push(buffer);
        Ok(matches && stored.is_some())
    }
}

/// Recomputes the Argon2 output of `phc` for `password` in `memory` (grown to the hash's
/// cost on first use) and compares it in constant time.
fn verify_with(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut output = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut output,
        &mut memory[..blocks],
    );
    computed.is_ok() && aws_lc_rs::constant_time::verify_slices_are_equal(&output, expected.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let verifier = PasswordVerifier::new(1, 4);
        let hash = hash_password("correct horse battery").unwrap();
        assert_eq!(verifier.verify(Some(&hash), "correct horse battery").await, Ok(true));
        assert_eq!(verifier.verify(Some(&hash), "wrong horse battery").await, Ok(false));
        assert_eq!(verifier.verify(None, "correct horse battery").await, Ok(false));
        assert_eq!(verifier.verify(Some("not a hash"), "x").await, Ok(false));
        // The buffer was reused, not multiplied.
        assert_eq!(verifier.buffers.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let verifier = std::sync::Arc::new(PasswordVerifier::new(1, 1));
        let hash = hash_password("password password").unwrap();
        let held = verifier.permits.acquire().await.unwrap();
        let queued = {
            let verifier = verifier.clone();
            let hash = hash.clone();
            tokio::spawn(async move { verifier.verify(Some(&hash), "password password").await })
        };
        while verifier.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(verifier.verify(Some(&hash), "password password").await.is_err(), "the queue of one is full");
        drop(held);
        assert_eq!(queued.await.unwrap(), Ok(true));
    }

    #[test]
    fn an_absurd_cost_is_not_computed() {
        let phc = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let mut memory = Vec::new();
        assert!(!verify_with(phc, b"x", &mut memory));
        assert!(memory.is_empty(), "no memory was allocated for it");
    }
}
