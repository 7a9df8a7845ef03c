/* An AVX2-only CPU as libraries see it, at this CPU's own speed: a preload library for scripts/masked_avx2.py.
 *
 * Linux can make the CPUID instruction fault (arch_prctl ARCH_SET_CPUID, on CPUs with "cpuid_fault").
 * Loaded before anything else (LD_PRELOAD), this library turns that on for the process, whose threads
 * inherit it, and answers each CPUID in the SIGSEGV handler: it runs the real instruction with faulting
 * off for a moment, then clears the feature bits an AVX2-only CPU (a Haswell) lacks: AVX-512 in every
 * form, AVX-VNNI, AVX512-BF16/FP16, AMX. Libraries that pick kernels by CPUID (oneDNN, MKL, ONNX Runtime's
 * MLAS, PyTorch, numpy) then pick their AVX2 kernels, which run natively: the speed is real, the CPU
 * is not an AVX2-only one (its clocks, caches and execution ports stay this CPU's).
 *
 * Any other SIGSEGV (not a CPUID instruction) gets the default action: the process crashes as it would.
 * If CPUID faulting is not available the library writes a message and exits with status 3, so that a
 * run that would silently see the real CPU never starts.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static long cpuid_faulting(int faults) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, faults ? 0 : 1); }

static void mask(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf == 7 && subleaf == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT; AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        *a &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));   /* AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA */
        *d &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));   /* AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16, AVX10 */
    }
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    (void)info;
    greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *instruction = (const uint8_t *)registers[REG_RIP];
    if (instruction[0] != 0x0f || instruction[1] != 0xa2) {   /* not CPUID: a real fault */
        signal(signal_number, SIG_DFL);
        return;                                               /* re-executes and crashes as usual */
    }
    uint32_t leaf = (uint32_t)registers[REG_RAX], subleaf = (uint32_t)registers[REG_RCX], a, b, c, d;
    cpuid_faulting(0);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(subleaf));
    cpuid_faulting(1);
    mask(leaf, subleaf, &a, &b, &c, &d);
    registers[REG_RAX] = a;
    registers[REG_RBX] = b;
    registers[REG_RCX] = c;
    registers[REG_RDX] = d;
    registers[REG_RIP] += 2;                                  /* past the two-byte CPUID */
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, 0);
    if (cpuid_faulting(1) != 0) {
        static const char message[] = "cpuid_mask: this CPU or kernel cannot make CPUID fault (no cpuid_fault)\n";
        write(2, message, sizeof message - 1);
        _exit(3);
    }
}
