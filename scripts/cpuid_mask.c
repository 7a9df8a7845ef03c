/* An AVX2 CPU without AVX-512, VNNI or AMX, as libraries see it, at this CPU's own speed: a preload library
 * for scripts/masked_avx2.py.
 *
 * Linux can make the CPUID instruction fault (arch_prctl ARCH_SET_CPUID, on CPUs with "cpuid_fault").
 * Preloaded (LD_PRELOAD, linked -z initfirst so that its constructor runs before other libraries'), this
 * library turns that on for the process, whose threads and forked children inherit it, and answers each
 * CPUID in its SIGSEGV handler: it runs the real instruction with faulting off for a moment, then clears
 * the feature bits an AVX2-only CPU lacks: AVX-512 in every form, AVX-VNNI and its kin, AMX, and the
 * GFNI/VAES/VPCLMULQDQ extensions a Haswell does not have. Libraries that pick kernels by CPUID (oneDNN,
 * MKL, ONNX Runtime's MLAS, PyTorch, numpy) then pick their AVX2 kernels, which run natively: the speed
 * is real, the CPU is not an AVX2-only one (its clocks, caches and execution ports stay this CPU's).
 *
 * Limits: XGETBV still reports the AVX-512 register state as enabled (no library we know picks kernels by
 * it alone); glibc's own choices (ifuncs, resolved before any constructor) are masked by GLIBC_TUNABLES
 * instead; execve clears the faulting flag, so a program it starts is masked only if LD_PRELOAD reaches it.
 *
 * The program keeps its own SIGSEGV handling: sigaction() and signal() for SIGSEGV are intercepted, the
 * handler they install is kept aside and called for every fault that is not a CPUID (a best-effort chain:
 * its sa_mask and SA_RESETHAND are not honoured). With none installed, a real fault crashes as it would.
 * If CPUID faulting is not available the library writes a message and exits with status 3, so that a
 * run that would silently see the real CPU never starts.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;
static struct sigaction program_action;   /* what the program asked for SIGSEGV: SIG_DFL until it asks */
static int installed;
static volatile unsigned long answered;   /* CPUID instructions answered so far: cpuid_mask_answered() */

/* How many CPUIDs this process has run under the mask (read by scripts through ctypes): a count that grows
 * while a model is timed would mean a CPUID on the timed path, each costing a signal and two system calls. */
unsigned long cpuid_mask_answered(void) { return answered; }

static long cpuid_faulting(int faults) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, faults ? 0 : 1); }

static void mask(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf == 7 && subleaf == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512 VBMI, VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512 VNNI, BITALG, VPOPCNTDQ */
        *c &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(9) | BIT(10) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT; AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        *a &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));   /* AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA */
        /* EDX: AVX-VNNI-INT8, AVX-NE-CONVERT, AMX-COMPLEX, AVX-VNNI-INT16, AVX10 */
        *d &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    }
}

static void restore_default(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    real_sigaction(SIGSEGV, &action, 0);
}

/* A fault that is not a CPUID: what the program's own SIGSEGV handling would have done. */
static void forward(int signal_number, siginfo_t *info, void *context) {
    if (program_action.sa_flags & SA_SIGINFO) {
        program_action.sa_sigaction(signal_number, info, context);
    } else if (program_action.sa_handler == SIG_DFL || (program_action.sa_handler == SIG_IGN && info->si_code > 0)) {
        restore_default();   /* a fault re-executes and crashes as usual (the kernel ignores SIG_IGN for faults too) */
        if (info->si_code <= 0) raise(signal_number);         /* sent, not a fault: send it again */
    } else if (program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(signal_number);
    }
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *instruction = (const uint8_t *)registers[REG_RIP];
    /* a faulting CPUID is a general-protection fault (SI_KERNEL); only then is RIP known to be readable */
    if (info->si_code != SI_KERNEL || instruction[0] != 0x0f || instruction[1] != 0xa2) {
        forward(signal_number, info, context);
        return;
    }
    uint32_t leaf = (uint32_t)registers[REG_RAX], subleaf = (uint32_t)registers[REG_RCX], a, b, c, d;
    cpuid_faulting(0);   /* every signal is blocked in here (sa_mask), so nothing runs CPUID unmasked */
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(subleaf));
    cpuid_faulting(1);
    mask(leaf, subleaf, &a, &b, &c, &d);
    registers[REG_RAX] = a;
    registers[REG_RBX] = b;
    registers[REG_RCX] = c;
    registers[REG_RDX] = d;
    registers[REG_RIP] += 2;   /* past the two-byte CPUID */
    answered++;
}

int sigaction(int signal_number, const struct sigaction *action, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (signal_number != SIGSEGV || !installed) return real_sigaction(signal_number, action, old);
    if (old) *old = program_action;
    if (action) program_action = *action;
    return 0;
}

sighandler_t signal(int signal_number, sighandler_t handler) {
    struct sigaction action, old;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    if (sigaction(signal_number, &action, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)old.sa_sigaction : old.sa_handler;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&action.sa_mask);
    real_sigaction(SIGSEGV, &action, 0);
    program_action.sa_handler = SIG_DFL;
    installed = 1;
    if (cpuid_faulting(1) != 0) {
        static const char message[] = "cpuid_mask: this CPU or kernel cannot make CPUID fault (no cpuid_fault)\n";
        write(2, message, sizeof message - 1);
        _exit(3);
    }
}
