//! The errors of the lock commands, typed: every layer passes an [`Error`] along, and
//! [`Error::text`] is the one place that spells each on the wire.
//!
//! The first word of the text is the error's code (`LOCKED`, `NOTLOCKED`, ...), as Redis
//! clients expect; [`Error::code`] gives it alone. No text contains a key.

/// Why a lock command did not do what it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The id is held by someone.
    Locked,
    /// The id is held and its queue of waiters is full (code `LOCKED`).
    QueueFull,
    /// The id is completed for good.
    Completed,
    /// The id is not locked.
    NotLocked,
    /// The key is not the one of the current holder.
    BadKey,
    /// A LOCK with a fingerprint other than the one the id was locked or completed with.
    Mismatch,
    /// The id argument is empty.
    EmptyId,
    /// The id argument is over the configured maximum length.
    IdTooLong,
    /// A malformed option list.
    Syntax,
    /// The RESULT of COMPLETE is over `--max-result-size`.
    ResultTooLarge,
    /// A fingerprint over the id length limit.
    FingerprintTooLong,
    /// The key a LOCK asks for is not 32 hexadecimal characters.
    KeyForm,
    /// The lease of a LOCK is not a whole number of ms or s in range.
    LockExpire,
    /// The lease of a RENEW is not a whole number of ms or s in range.
    RenewExpire,
    /// The WAIT of a LOCK is not a whole number of ms in range.
    WaitTimeout,
    /// The log could not store the change (or the log has failed and takes no writes).
    LogFailed,
    /// Chaos mode refused the request before running it.
    ChaosRefused,
}

impl Error {
    /// The full error text as it goes on the wire, code first.
    pub const fn text(self) -> &'static str {
        match self {
            Error::Locked => "LOCKED the id is locked by another holder",
            Error::QueueFull => "LOCKED the id is locked and its wait queue is full",
            Error::Completed => "COMPLETED the id is already completed",
            Error::NotLocked => "NOTLOCKED the id is not locked",
            Error::BadKey => "BADKEY the key does not match the lock",
            Error::Mismatch => "MISMATCH the id was locked with a different fingerprint",
            Error::EmptyId => "ERR the id must not be empty",
            Error::IdTooLong => "ERR id too long",
            Error::Syntax => "ERR syntax error",
            Error::ResultTooLarge => "ERR result too large",
            Error::FingerprintTooLong => "ERR fingerprint too long",
            Error::KeyForm => "ERR the key must be 32 hexadecimal characters",
            Error::LockExpire => "ERR invalid expire time in 'lock' command",
            Error::RenewExpire => "ERR invalid expire time in 'renew' command",
            Error::WaitTimeout => "ERR timeout is not an integer or out of range",
            Error::LogFailed => {
                "IOERR the log could not be written: the change was taken back, but its outcome is unknown until the log is rewritten"
            }
            Error::ChaosRefused => {
                "TRYAGAIN chaos mode refused this request before running it; retry it"
            }
        }
    }

    /// The code alone: the first word of [`Error::text`].
    pub fn code(self) -> &'static str {
        let text = self.text();
        text.split_once(' ').map_or(text, |(code, _)| code)
    }

    /// The sentence after the code.
    pub fn sentence(self) -> &'static str {
        self.text().split_once(' ').map_or("", |(_, rest)| rest)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_first_word_in_capitals() {
        for (e, code) in [
            (Error::Locked, "LOCKED"),
            (Error::QueueFull, "LOCKED"),
            (Error::NotLocked, "NOTLOCKED"),
            (Error::BadKey, "BADKEY"),
            (Error::Syntax, "ERR"),
            (Error::LogFailed, "IOERR"),
            (Error::ChaosRefused, "TRYAGAIN"),
        ] {
            assert_eq!(e.code(), code);
            assert!(e.text().starts_with(code));
            assert!(!e.sentence().is_empty());
        }
    }
}
