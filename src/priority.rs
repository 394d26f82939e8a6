//! Background work yields the CPU to the window: training, scanning and loading threads run at
//! a lower OS priority (nice +10), so the UI thread is scheduled first when it has a frame to
//! draw and training still gets every cycle the UI does not use.

/// Lowers the calling thread's scheduling priority. Best effort: where the OS refuses or
/// has no per-thread priority, the thread runs as before.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // On Linux, `setpriority(PRIO_PROCESS, tid, ..)` sets one thread's nice value. Never
        // raise it: a process started with `nice -n 19` stays there.
        // SAFETY: plain system calls on the calling thread's own id.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, current.max(BACKGROUND_NICE));
        }
    }
}

#[cfg(target_os = "linux")]
const BACKGROUND_NICE: libc::c_int = 10;

/// Makes rayon's worker threads (burn's CPU backend, image decoding) background threads.
/// Call before anything uses rayon; later calls do nothing.
pub fn lower_rayon_pool() {
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| lower_current_thread())
        .build_global();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_lowered_thread_has_a_higher_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: reading the calling thread's own priority.
            let nice =
                || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            let before = nice();
            super::lower_current_thread();
            assert_eq!(nice(), before.max(super::BACKGROUND_NICE));
        })
        .join()
        .unwrap();
    }
}
