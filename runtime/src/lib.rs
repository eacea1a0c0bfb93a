//! berth-runtime owns running one process in new Linux namespaces on a rootfs
//! it is handed: pivot_root, /proc /dev /sys, users, capabilities, cgroup limits,
//! stdio, signals and exit status. It knows nothing of images or registries.
//! It is filled in by the runtime issue.
