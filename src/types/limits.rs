//! The limits lock commands are parsed against, from the configuration; RESP and HTTP use the
//! same.

/// Limits applied while parsing lock commands.
#[derive(Clone, Copy, Debug)]
pub struct CommandLimits {
    /// Longest accepted id (and fingerprint) in bytes.
    pub max_id_len: usize,
    /// Longest accepted COMPLETE ... RESULT value in bytes.
    pub max_result_size: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            max_id_len: 512,
            max_result_size: 64 * 1024,
        }
    }
}
