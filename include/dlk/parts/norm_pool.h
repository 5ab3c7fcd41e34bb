/* norm_pool: API under construction; folded into dlk.h when it lands. */
