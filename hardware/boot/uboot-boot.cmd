# Halyard A/B boot script for U-Boot (hush): the bootloader side of docs/boot-contract.md.
# Build with: mkimage -A arm64 -T script -C none -d uboot-boot.cmd boot.scr
# Rules (identical to halyard_hardware::boot::select::boot_attempt, and tested against it):
#   1. missing or malformed values read as factory defaults (A: priority 1, successful; B: 0)
#   2. a slot that is not successful and has no tries left gets priority 0 (given up)
#   3. the higher priority wins, A on a tie (and A when nothing is bootable)
#   4. if the chosen slot is not successful, one try is taken BEFORE booting it
#   5. the environment is saved (saveenv: the redundant copy makes it atomic) only on change
# Shell variables (name=value) stay out of the saved environment; setenv is for saved ones.
# Boot section: expects ${devtype} ${devnum} ${kernel_addr_r} ${fdt_addr_r} ${fdtfile} (distro
# boot conventions) and the Halyard disk layout: partition 2 = root_a, 3 = root_b.
halyard_dirty=0
halyard_valid=0
for halyard_d in 0 1 2 3 4 5 6 7 8 9; do
  if test "${HALYARD_A_PRIORITY}" = "${halyard_d}"; then
    halyard_valid=1
  fi
done
if test "${halyard_valid}" = 0; then
  setenv HALYARD_A_PRIORITY 1
fi
halyard_valid=0
for halyard_d in 0 1 2 3 4 5 6 7 8 9; do
  if test "${HALYARD_A_TRIES}" = "${halyard_d}"; then
    halyard_valid=1
  fi
done
if test "${halyard_valid}" = 0; then
  setenv HALYARD_A_TRIES 0
fi
if test "${HALYARD_A_OK}" != 1 && test "${HALYARD_A_OK}" != 0; then
  setenv HALYARD_A_OK 1
fi
if test "${HALYARD_A_PRIORITY}" != 0 && test "${HALYARD_A_OK}" = 0 && test "${HALYARD_A_TRIES}" = 0; then
  setenv HALYARD_A_PRIORITY 0
  halyard_dirty=1
fi
halyard_valid=0
for halyard_d in 0 1 2 3 4 5 6 7 8 9; do
  if test "${HALYARD_B_PRIORITY}" = "${halyard_d}"; then
    halyard_valid=1
  fi
done
if test "${halyard_valid}" = 0; then
  setenv HALYARD_B_PRIORITY 0
fi
halyard_valid=0
for halyard_d in 0 1 2 3 4 5 6 7 8 9; do
  if test "${HALYARD_B_TRIES}" = "${halyard_d}"; then
    halyard_valid=1
  fi
done
if test "${halyard_valid}" = 0; then
  setenv HALYARD_B_TRIES 0
fi
if test "${HALYARD_B_OK}" != 1 && test "${HALYARD_B_OK}" != 0; then
  setenv HALYARD_B_OK 0
fi
if test "${HALYARD_B_PRIORITY}" != 0 && test "${HALYARD_B_OK}" = 0 && test "${HALYARD_B_TRIES}" = 0; then
  setenv HALYARD_B_PRIORITY 0
  halyard_dirty=1
fi
halyard_slot=A
if test "${HALYARD_B_PRIORITY}" -gt "${HALYARD_A_PRIORITY}"; then
  halyard_slot=B
fi
if test "${halyard_slot}" = A && test "${HALYARD_A_OK}" = 0; then
  if test "${HALYARD_A_TRIES}" = 9; then
    setenv HALYARD_A_TRIES 8
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 8; then
    setenv HALYARD_A_TRIES 7
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 7; then
    setenv HALYARD_A_TRIES 6
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 6; then
    setenv HALYARD_A_TRIES 5
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 5; then
    setenv HALYARD_A_TRIES 4
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 4; then
    setenv HALYARD_A_TRIES 3
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 3; then
    setenv HALYARD_A_TRIES 2
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 2; then
    setenv HALYARD_A_TRIES 1
    halyard_dirty=1
  elif test "${HALYARD_A_TRIES}" = 1; then
    setenv HALYARD_A_TRIES 0
    halyard_dirty=1
  fi
fi
if test "${halyard_slot}" = B && test "${HALYARD_B_OK}" = 0; then
  if test "${HALYARD_B_TRIES}" = 9; then
    setenv HALYARD_B_TRIES 8
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 8; then
    setenv HALYARD_B_TRIES 7
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 7; then
    setenv HALYARD_B_TRIES 6
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 6; then
    setenv HALYARD_B_TRIES 5
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 5; then
    setenv HALYARD_B_TRIES 4
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 4; then
    setenv HALYARD_B_TRIES 3
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 3; then
    setenv HALYARD_B_TRIES 2
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 2; then
    setenv HALYARD_B_TRIES 1
    halyard_dirty=1
  elif test "${HALYARD_B_TRIES}" = 1; then
    setenv HALYARD_B_TRIES 0
    halyard_dirty=1
  fi
fi
if test "${HALYARD_BOOTED}" != "${halyard_slot}"; then
  setenv HALYARD_BOOTED ${halyard_slot}
  halyard_dirty=1
fi
if test "${halyard_dirty}" = 1; then
  saveenv
fi
# boot the chosen slot
if test "${halyard_slot}" = B; then
  halyard_part=3
  halyard_root=root_b
else
  halyard_part=2
  halyard_root=root_a
fi
setenv bootargs "${bootargs} root=PARTLABEL=${halyard_root} ro rootwait halyard.slot=${halyard_slot}"
load ${devtype} ${devnum}:${halyard_part} ${kernel_addr_r} /boot/Image
load ${devtype} ${devnum}:${halyard_part} ${fdt_addr_r} /boot/dtbs/${fdtfile}
booti ${kernel_addr_r} - ${fdt_addr_r}
# booti returns only on failure: reset, which counts as a failed try of a slot on trial.
reset
