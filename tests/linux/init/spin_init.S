// /init for hosts where guest user mode cannot make system calls (kvm_pvm:
// a 64-bit `syscall` from user mode never reaches the guest kernel, see
// tests/linux/README.md): it makes none and never exits, so Linux stays up
// (init's exit would panic it) and its drivers keep answering the host. It
// costs a host core while it runs: user mode runs natively there.
        .text
        .globl _start
_start:
1:      pause
        jmp 1b
        .section .note.GNU-stack, "", @progbits
