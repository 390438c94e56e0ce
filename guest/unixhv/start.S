// UnixHv entry point. The VMM starts us in 64-bit long mode per Linux's 64-bit boot protocol:
// paging on (identity map), flat segments, interrupts off, RSI = physical address of the zero
// page (boot_params). We know nothing about the VMM's stack, so set our own, clear .bss (the ELF
// loader should have, but a guest must not trust that), run the globals' constructors, and call
// unixhv_main(boot_params).
// If it returns, power off.

    .section .text.start, "ax"
    .code64
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    leaq unixhv_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    movq %rsi, %r12                 // callee-saved: boot_params survives the .bss clear

    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb

    // Globals' constructors (.init_array), in link order: a global whose
    // members have default initializers is not constant-initialized when one
    // member's type has a non-constexpr constructor.
    leaq __init_array_start(%rip), %rbx
2:  leaq __init_array_end(%rip), %rax
    cmpq %rax, %rbx
    jae 3f
    call *(%rbx)
    addq $8, %rbx
    jmp 2b
3:
    movq %r12, %rdi
    call unixhv_main
    call unixhv_power_off
1:  hlt
    jmp 1b
    .size _start, . - _start

    // The stack lives outside .bss so the clear above does not have to touch it.
    .section .stack, "aw", @nobits
    .balign 16
unixhv_stack:
    .skip 16384
unixhv_stack_top:

    .section .note.GNU-stack, "", @progbits
