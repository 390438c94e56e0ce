// Real-mode start-up code for application processors. The BSP copies
// [ap_trampoline_start, ap_trampoline_end) to AP_TRAMPOLINE (0x10000) and
// stores its CR3 in ap_trampoline_cr3 (in the copy); the SIPI vector 0x10
// starts each AP at CS:IP = 0x1000:0000. The AP goes straight from real mode
// to long mode (PAE, LME, then PE|PG together), onto the BSP's identity page
// tables, takes a stack and calls ap_main().

#define AP_TRAMPOLINE 0x10000
#define AP_STACK_SIZE 4096
#define AP_MAX 64
#define REL(x) ((x) - ap_trampoline_start)

    .section .rodata.trampoline, "a"
    .code16
    .globl ap_trampoline_start, ap_trampoline_end, ap_trampoline_cr3
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl REL(ap_gdt_ptr)
    movl $0x20, %eax                // CR4.PAE
    movl %eax, %cr4
    movl REL(ap_trampoline_cr3), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          // EFER
    rdmsr
    orl $0x100, %eax                // LME
    wrmsr
    movl $0x80000011, %eax          // PG | ET | PE
    movl %eax, %cr0
    ljmpl $0x08, $ap_long_mode      // 64-bit code segment, absolute target

    .balign 8
ap_gdt:
    .quad 0                         // null
    .quad 0x00AF9A000000FFFF        // 0x08: 64-bit code
    .quad 0x00CF92000000FFFF        // 0x10: data
ap_gdt_end:
ap_gdt_ptr:
    .word ap_gdt_end - ap_gdt - 1
    .long AP_TRAMPOLINE + (ap_gdt - ap_trampoline_start)
    .balign 4
ap_trampoline_cr3:
    .long 0
ap_trampoline_end:

    .text
    .code64
ap_long_mode:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %eax
    lock xaddl %eax, ap_stack_index(%rip)
    cmpl $AP_MAX, %eax
    jae 2f
    incl %eax
    shlq $12, %rax
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    xorl %ebp, %ebp
    call ap_main
2:  cli
    hlt
    jmp 2b

    .data
    .balign 4
ap_stack_index:
    .long 0

    .section .stack, "aw", @nobits
    .balign 4096
ap_stacks:
    .skip AP_STACK_SIZE * AP_MAX

    .section .note.GNU-stack, "", @progbits
