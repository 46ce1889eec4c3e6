//! What the daemon needs from the machine it runs on: enough open files for every camera, set
//! up at start, and the allocator's free memory given back while it runs.

/// Open files a camera may hold at once: its stream's socket or file, a main-stream photo being
/// taken, the ledger's database, journal and shared-memory files, evidence being written.
const FILES_PER_CAMERA: u64 = 8;
/// Open files of the process besides its cameras (broker link, console, logs, ONNX Runtime).
const FILES_BASE: u64 = 256;

/// Raises the soft limit on open files to the hard limit (Linux's default soft limit, 1024,
/// is too low for a few hundred cameras) and says so when even the hard limit is too low for
/// `cameras`. Returns the limit in force.
pub fn raise_open_files(cameras: usize) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read the struct we own; nothing else is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                "open-file limit raised from {} to {}",
                lim.rlim_cur,
                lim.rlim_max
            );
            lim = raised;
        } else {
            tracing::warn!(
                "cannot raise the open-file limit from {}: {}",
                lim.rlim_cur,
                std::io::Error::last_os_error()
            );
        }
    }
    let limit: u64 = lim.rlim_cur;
    let need = FILES_BASE + FILES_PER_CAMERA * cameras as u64;
    if limit < need {
        tracing::warn!(
            "the open-file limit is {limit}, {cameras} cameras may need {need}: raise it \
             (LimitNOFILE= in the systemd unit, or `ulimit -n` before starting), or cameras \
             will fail to connect and evidence will fail to be written"
        );
    }
    Some(limit)
}

/// How often the daemon gives the allocator's free pages back to the system.
pub const RELEASE_FREE_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Gives the C allocator's free pages back to the system. glibc keeps what the camera threads
/// free in per-thread arenas: in a soak of 30 RTSP cameras the 16 arenas held 200 MB free beside
/// 358 MB in use, and resident memory rose a few MB with every round of reconnections (decoder
/// buffers freed in one arena, allocated anew in another).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and advises the allocator's own free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = super::raise_open_files(1).expect("getrlimit works on Linux");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads into a struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(limit, lim.rlim_cur);
    }
}
