/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A 16550A UART on port I/O, enough for Linux's 8250 driver and its serial
 * console: THR/RBR, IER, IIR/FCR, LCR, MCR (with loopback: the driver's
 * probe checks that MSR follows MCR), LSR, MSR, SCR and the divisor latch.
 * Transmission is instant: THR is always empty again after a write, so the
 * "THR empty" interrupt comes back at once. The interrupt line follows IIR
 * (level = an interrupt is pending) through KVM_IRQ_LINE, as QEMU's 16550
 * does; the in-kernel PIC turns each rise into an edge. Nothing is ever
 * received (no input), so RBR only holds what loopback wrote.
 */
#include "kvm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util.h"

#define UART_BLOB_VERSION 1u
#define UART_REGS	  12u /* the register bytes of the blob, in struct order */

/* Register offsets. */
enum { R_DATA = 0, R_IER, R_IIR, R_LCR, R_MCR, R_LSR, R_MSR, R_SCR };

#define LCR_DLAB   0x80
#define MCR_LOOP   0x10
#define LSR_DR	   0x01
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define IER_RDI	   0x01
#define IER_THRI   0x02
#define IER_RLSI   0x04
#define IER_MSI	   0x08
#define IIR_NO_INT 0x01
#define IIR_THRI   0x02
#define IIR_RDI	   0x04
#define IIR_RLSI   0x06
#define IIR_FIFO   0xc0
#define FCR_ENABLE 0x01
#define MSR_DELTAS 0x0f
#define MSR_IDLE   0xb0 /* DCD, DSR, CTS: a line that is always ready */

struct uart_regs {
	uint8_t rbr, ier, iir, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t thr_pending; /* a THR-empty interrupt not yet acknowledged */
};

struct squib_kvm_uart {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast at every end of line */
	struct squib_kvm_vm *vm;
	uint16_t port;
	uint32_t irq;
	int out_fd;
	bool level; /* what the interrupt line was last set to */
	struct uart_regs r;
	uint64_t bytes, lines;
	size_t cur_len, last_len;
	char cur[SQUIB_KVM_UART_LINE], last[SQUIB_KVM_UART_LINE];
};

/* ---- registers ------------------------------------------------------------------ */

/* Under u->lock: recompute IIR and move the interrupt line when it changes. */
static void update_irq(struct squib_kvm_uart *u)
{
	struct uart_regs *r = &u->r;
	uint8_t iir = IIR_NO_INT;
	bool level;

	if ((r->ier & IER_RLSI) && (r->lsr & 0x1e))
		iir = IIR_RLSI;
	else if ((r->ier & IER_RDI) && (r->lsr & LSR_DR))
		iir = IIR_RDI;
	else if ((r->ier & IER_THRI) && r->thr_pending)
		iir = IIR_THRI;
	else if ((r->ier & IER_MSI) && (r->msr & MSR_DELTAS))
		iir = 0;
	r->iir = iir | ((r->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
	level = !(iir & IIR_NO_INT);
	if (level != u->level && u->vm->cfg.irqchip) {
		struct kvm_irq_level l = {.irq = u->irq, .level = level};

		/* A failure here leaves the guest to the 8250 driver's timeouts. */
		if (kvm_ioctl(u->vm->vm_fd, KVM_IRQ_LINE, &l) == 0)
			u->level = level;
	}
}

/* Under u->lock: one byte leaves the UART (the output fd, the line record). */
static void transmit(struct squib_kvm_uart *u, uint8_t c)
{
	u->bytes++;
	if (u->out_fd >= 0) {
		ssize_t w;

		do
			w = write(u->out_fd, &c, 1);
		while (w < 0 && errno == EINTR);
	}
	if (c == '\n') {
		memcpy(u->last, u->cur, u->cur_len);
		u->last_len = u->cur_len;
		u->cur_len = 0;
		u->lines++;
		pthread_cond_broadcast(&u->cond);
	} else if (c != '\r' && u->cur_len < SQUIB_KVM_UART_LINE - 1) {
		u->cur[u->cur_len++] = (char)c;
	}
}

/* MSR as the driver reads it: in loopback the modem outputs drive the inputs. */
static uint8_t msr_value(const struct uart_regs *r)
{
	uint8_t m = r->mcr;

	if (!(r->mcr & MCR_LOOP))
		return r->msr;
	return (uint8_t)(((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) |
			 ((m & 0x08) << 4) | (r->msr & MSR_DELTAS));
}

static void uart_write(struct squib_kvm_uart *u, uint16_t reg, uint8_t v)
{
	struct uart_regs *r = &u->r;

	if ((r->lcr & LCR_DLAB) && reg <= R_IER) {
		*(reg == R_DATA ? &r->dll : &r->dlm) = v;
		return;
	}
	switch (reg) {
	case R_DATA:
		if (r->mcr & MCR_LOOP) {
			r->rbr = v;
			r->lsr |= LSR_DR;
		} else {
			transmit(u, v);
		}
		r->thr_pending = 1; /* sent at once: THR is empty again */
		break;
	case R_IER:
		if ((v & IER_THRI) && !(r->ier & IER_THRI))
			r->thr_pending = 1;
		r->ier = v & 0x0f;
		break;
	case R_IIR:
		r->fcr = v & 0xc9; /* FCR; the FIFO-reset bits act at once and read as 0 */
		break;
	case R_LCR:
		r->lcr = v;
		break;
	case R_MCR:
		r->mcr = v & 0x1f;
		break;
	case R_SCR:
		r->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	update_irq(u);
}

static uint8_t uart_read(struct squib_kvm_uart *u, uint16_t reg)
{
	struct uart_regs *r = &u->r;
	uint8_t v = 0;

	if ((r->lcr & LCR_DLAB) && reg <= R_IER)
		return reg == R_DATA ? r->dll : r->dlm;
	switch (reg) {
	case R_DATA:
		v = r->rbr;
		r->lsr &= (uint8_t)~LSR_DR;
		break;
	case R_IER:
		v = r->ier;
		break;
	case R_IIR:
		v = r->iir;
		if ((v & 0x0f) == IIR_THRI)
			r->thr_pending = 0; /* reading IIR acknowledges THR empty */
		break;
	case R_LCR:
		v = r->lcr;
		break;
	case R_MCR:
		v = r->mcr;
		break;
	case R_LSR:
		v = r->lsr | LSR_THRE | LSR_TEMT;
		r->lsr &= (uint8_t)~0x1e; /* error bits clear on read */
		break;
	case R_MSR:
		v = msr_value(r);
		r->msr &= (uint8_t)~MSR_DELTAS;
		break;
	case R_SCR:
		v = r->scr;
		break;
	}
	update_irq(u);
	return v;
}

static int uart_io(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		   uint32_t size)
{
	struct squib_kvm_uart *u = ctx;
	uint16_t reg;

	(void)vcpu;
	kvm_lock(&u->lock);
	reg = (uint16_t)(port - u->port);
	if (is_write)
		uart_write(u, reg, data[0]);
	else {
		memset(data, 0, size);
		data[0] = uart_read(u, reg);
	}
	kvm_unlock(&u->lock);
	return 0;
}

/* ---- the blob -------------------------------------------------------------------
 * u32 version (1), 12 register bytes (rbr ier iir lcr mcr lsr msr scr dll dlm fcr
 * thr_pending), u8 line level, u8 0, u16 n, u64 bytes, u64 lines, then the
 * last complete line (n <= SQUIB_KVM_UART_LINE - 1 bytes, no newline).
 */
#define UART_BLOB_HEAD (4 + UART_REGS + 4 + 16)

static int uart_save(void *ctx, uint8_t **blob, size_t *len)
{
	struct squib_kvm_uart *u = ctx;
	uint8_t *b = malloc(UART_BLOB_HEAD + SQUIB_KVM_UART_LINE);

	if (!b)
		return SQUIB_E_NOMEM;
	kvm_lock(&u->lock);
	squib_put_le32(b, UART_BLOB_VERSION);
	memcpy(b + 4, &u->r, UART_REGS);
	b[16] = u->level;
	b[17] = 0;
	squib_put_le16(b + 18, (uint16_t)u->last_len);
	squib_put_le64(b + 20, u->bytes);
	squib_put_le64(b + 28, u->lines);
	memcpy(b + UART_BLOB_HEAD, u->last, u->last_len);
	*len = UART_BLOB_HEAD + u->last_len;
	kvm_unlock(&u->lock);
	*blob = b;
	return 0;
}

int squib_kvm_uart_blob_info(const uint8_t *blob, size_t len, struct squib_kvm_uart_info *out)
{
	size_t n;

	if (!blob || !out || len < UART_BLOB_HEAD || squib_get_le32(blob) != UART_BLOB_VERSION)
		return SQUIB_E_ENCODING;
	n = squib_get_le16(blob + 18);
	if (n >= SQUIB_KVM_UART_LINE || len != UART_BLOB_HEAD + n || blob[16] > 1)
		return SQUIB_E_ENCODING;
	out->bytes = squib_get_le64(blob + 20);
	out->lines = squib_get_le64(blob + 28);
	memcpy(out->last_line, blob + UART_BLOB_HEAD, n);
	out->last_line[n] = '\0';
	return 0;
}

/*
 * The saved line level goes back to KVM as well: the restored PIC remembers
 * the level it last saw (no new edge), but KVM's per-source line state is
 * not part of the PIC state, so a line left high would otherwise read as low
 * and the next rise of the UART would be lost.
 */
static int uart_restore(void *ctx, const uint8_t *blob, size_t len)
{
	struct squib_kvm_uart *u = ctx;
	struct squib_kvm_uart_info info;
	int rc = squib_kvm_uart_blob_info(blob, len, &info);

	if (rc)
		return rc;
	kvm_lock(&u->lock);
	memcpy(&u->r, blob + 4, UART_REGS);
	u->level = false;
	u->bytes = info.bytes;
	u->lines = info.lines;
	u->last_len = strlen(info.last_line);
	memcpy(u->last, info.last_line, u->last_len);
	u->cur_len = 0;
	if (blob[16] && u->vm->cfg.irqchip) {
		struct kvm_irq_level l = {.irq = u->irq, .level = 1};

		if (kvm_ioctl(u->vm->vm_fd, KVM_IRQ_LINE, &l))
			rc = SQUIB_E_CAPTURE;
		else
			u->level = true;
	}
	kvm_unlock(&u->lock);
	return rc;
}

static void uart_free(void *ctx)
{
	struct squib_kvm_uart *u = ctx;

	pthread_cond_destroy(&u->cond);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct squib_kvm_device_ops uart_ops = {
    .kind = "uart-16550",
    .io = uart_io,
    .save = uart_save,
    .restore = uart_restore,
    .free = uart_free,
};

/* ---- construction and waiting ---------------------------------------------------- */

static struct squib_kvm_uart *uart_alloc(void)
{
	struct squib_kvm_uart *u = calloc(1, sizeof(*u));
	pthread_condattr_t ca;
	bool ok;

	if (!u)
		return NULL;
	if (pthread_condattr_init(&ca)) {
		free(u);
		return NULL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	ok = pthread_cond_init(&u->cond, &ca) == 0;
	pthread_condattr_destroy(&ca);
	if (ok && pthread_mutex_init(&u->lock, NULL)) {
		pthread_cond_destroy(&u->cond);
		ok = false;
	}
	if (!ok) {
		free(u);
		return NULL;
	}
	u->r.iir = IIR_NO_INT;
	u->r.lsr = LSR_THRE | LSR_TEMT;
	u->r.msr = MSR_IDLE;
	return u;
}

int squib_kvm_vm_add_uart(struct squib_kvm_vm *vm, uint16_t port, uint32_t irq, int out_fd,
			  struct squib_kvm_uart **out, struct squib_error_detail *d)
{
	struct squib_kvm_uart *u;
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	if (port & 7 || irq > 15)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "UART at port 0x%x, IRQ %u (8-aligned port, IRQ 0..15)", port,
				      irq);
	if (!(u = uart_alloc()))
		return squib_fail(d, SQUIB_E_NOMEM);
	u->vm = vm;
	u->port = port;
	u->irq = irq;
	u->out_fd = out_fd;
	rc = squib_kvm_vm_add_device(vm, "serial0", port, 8, &uart_ops, u, d);
	if (!rc && out)
		*out = u;
	return rc;
}

void squib_kvm_uart_get(struct squib_kvm_uart *u, struct squib_kvm_uart_info *out)
{
	kvm_lock(&u->lock);
	out->bytes = u->bytes;
	out->lines = u->lines;
	memcpy(out->last_line, u->last, u->last_len);
	out->last_line[u->last_len] = '\0';
	kvm_unlock(&u->lock);
}

int squib_kvm_uart_wait_lines(struct squib_kvm_uart *u, uint64_t min_lines, uint32_t timeout_ms,
			      struct squib_kvm_uart_info *info, struct squib_error_detail *d)
{
	struct timespec deadline = kvm_deadline_after_ms(timeout_ms);
	int err = 0;

	if (!u)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL UART");
	kvm_lock(&u->lock);
	while (u->lines < min_lines && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&u->cond, &u->lock, &deadline);
	err = u->lines < min_lines ? ETIMEDOUT : 0;
	kvm_unlock(&u->lock);
	if (info)
		squib_kvm_uart_get(u, info);
	return err ? squib_fail_errno(d, SQUIB_E_IO, err) : 0;
}
