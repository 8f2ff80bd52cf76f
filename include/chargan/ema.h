/* Exponential moving average (EMA) of the generator's weights (Yazici et al. 2019, "The
 * unusual effectiveness of averaging in GAN training"; Karras et al. use it for every
 * ProGAN/StyleGAN result). Training is unchanged: the EMA is a second copy of G's flat
 * parameter buffer, updated after every Adam step, and samples/scores are drawn from it.
 *
 * After update number t (t = the generator's Adam counter after the step, 1 for the first):
 *     d_t = min(decay, (1 + t) / (10 + t))          warm-up: early EMA forgets the init
 *     ema = ema + (1 - d_t) * (param - ema)         elementwise, in float
 * The arithmetic is elementwise and the same on every rank and after a resume (t comes from
 * the checkpointed Adam counter), so all ranks keep bit-identical copies and resumed training
 * continues the same sequence bit for bit.
 *
 * Batch-norm running mean/variance (non-trainable tensors in the same buffer) are averaged
 * the same way; see cg_gan_ema_update for why. */
#ifndef CHARGAN_EMA_H
#define CHARGAN_EMA_H
#include <stddef.h>

#include "chargan/gan.h"

/* The decay a run gets without --ema: 0.999 for dcgan, cdcgan and deep, 0 (no EMA) for seed
 * and small, whose slow learning rates keep them improving through any CPU budget (see
 * ema.c). */
double cg_ema_default(const char *model);

/* d_t = min(decay, (1 + t) / (10 + t)) for t >= 0 (computed in double, returned as float). */
float cg_ema_decay_at(double decay, long t);

/* ema[i] += (1 - d) * (param[i] - ema[i]) for i < n. */
void cg_ema_update(float *ema, const float *param, size_t n, float d);

/* Allocates gan->ema_g (G's n_params floats), fills it with G's current parameters and sets
 * gan->ema_decay = decay (in (0, 1)). Calling it again only changes the decay and resets the
 * copy. */
void cg_gan_ema_enable(cg_gan *gan, double decay);

/* ema_g = G's parameters (no-op without EMA). */
void cg_gan_ema_reset(cg_gan *gan);

/* One update with t = gan->adam_g.t (call right after cg_gan_apply; no-op without EMA). */
void cg_gan_ema_update(cg_gan *gan);

/* Exchanges the contents of G's parameters and the EMA copy (no-op without EMA): call it
 * before and after generating to draw from the EMA generator; two calls restore every bit. */
void cg_gan_ema_swap(cg_gan *gan);

#endif
