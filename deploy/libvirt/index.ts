/** The libvirt deploy driver's parts: domain XML for KVM, QEMU, Xen HVM and Xen PV guests, and virsh. */
export { checkGuestSpec, cpuQuotaUs, CPU_PERIOD_US, domainXml, GUEST_HYPERVISORS, xenCap, GuestSpecError, type GuestHypervisor, type GuestSpec } from './domain.js';
export { asSeenFromGuest, guestSpec, guestSpecs, IMAGE_CHECKOUT, isGuestNet, type GuestOptions } from './guests.js';
export { ensureInitrd, InitramfsError, seededInitrd } from './initramfs.js';
export { libvirtError, LibvirtError, Virsh, type LibvirtErrorCode } from './virsh.js';
export { definedGuest, DeployError, guestFiles, LibvirtDriver, newestKernel, type GuestDefinition, type LibvirtDriverOptions } from './driver.js';
