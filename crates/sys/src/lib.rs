//! The one place Switchyard calls the C library for something std does not
//! offer. The rest of the workspace forbids `unsafe`; each call here is a
//! single `unsafe` block with the reason it is sound.

/// Asks the allocator to hand the memory it holds free back to the system.
///
/// glibc keeps freed memory in its arenas for reuse and returns it only
/// from the top of a heap, so parsing a large routes file (tens of MiB of
/// YAML nodes for a 1 MiB file) would leave that much resident after the
/// nodes are freed. `malloc_trim(0)` also releases the free pages below live
/// allocations. It locks each arena briefly, so call it at a quiet point,
/// not per request. Returns whether anything was released; elsewhere than
/// glibc it does nothing and returns false.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and only rearranges glibc's own
    // free lists, under glibc's own arena locks; it is safe to call from any
    // thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Asks the allocator to hand the memory it holds free back to the system
/// (nothing to do off glibc: musl and other allocators return it
/// themselves or have no such call).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

/// Seconds since the Unix epoch, from the kernel's coarse real-time clock:
/// its value as of the last timer tick (a few milliseconds behind at
/// most), read without the time counter the precise clock needs. Meant
/// for a value that changes once a second and is needed on every
/// request, such as the `Date` field.
#[cfg(target_os = "linux")]
pub fn coarse_unix_seconds() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `now` is a valid, writable timespec for the duration of the
    // call, and CLOCK_REALTIME_COARSE is a clock every Linux since 2.6.32
    // has; clock_gettime writes only into `now`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    match u64::try_from(now.tv_sec) {
        Ok(secs) if rc == 0 => secs,
        _ => precise_unix_seconds(),
    }
}

/// Seconds since the Unix epoch (elsewhere than Linux, from the precise
/// clock).
#[cfg(not(target_os = "linux"))]
pub fn coarse_unix_seconds() -> u64 {
    precise_unix_seconds()
}

fn precise_unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// Freeing a large block of small allocations and trimming runs and
    /// reports a result (whether pages came back depends on the heap).
    /// The coarse clock reads the same second as the precise one, give or
    /// take the tick between them.
    #[test]
    fn the_coarse_clock_is_the_real_time() {
        let precise = super::precise_unix_seconds();
        let coarse = super::coarse_unix_seconds();
        assert!(
            coarse.abs_diff(precise) <= 1,
            "coarse {coarse}, precise {precise}"
        );
    }

    #[test]
    fn trimming_after_a_large_free_does_not_disturb_live_data() {
        let live: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let garbage: Vec<Vec<u8>> = (0..100_000).map(|_| vec![1u8; 64]).collect();
        drop(garbage);
        let _ = super::release_free_memory();
        assert_eq!(live[999], "999");
    }
}
