/* The smallest PVH guest: entered in 32-bit protected mode (paging off, flat
   segments) at the address of its Xen PHYS32_ENTRY note, as any PVH loader
   does (hvstack's vmwp, QEMU's -kernel, Firecracker, Cloud Hypervisor). It
   prints one line on COM1 and powers off: ACPI PM1a S5 at 0x604 (hvstack's
   power port), then isa-debug-exit at 0xf4 (QEMU with that device exits),
   then halts. The same image runs start to exit on both, for the lifecycle
   benchmark (tests/bench:lifecycle). No C, no stack. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                /* namesz: "Xen\0" */
    .long 4                /* descsz */
    .long 18               /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start        /* the 32-bit entry point */

    .section .text.start, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cld
    mov $message, %esi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0x604, %dx        /* PM1a_CNT: SLP_TYP S5 (5 << 10) | SLP_EN (1 << 13) */
    mov $0x3400, %ax
    out %ax, %dx
    mov $0xf4, %dx         /* QEMU isa-debug-exit: exit status (0 << 1) | 1 */
    xor %al, %al
    out %al, %dx
3:  cli
    hlt
    jmp 3b

    .section .rodata
message:
    .asciz "hvstack pvh hello\r\n"
