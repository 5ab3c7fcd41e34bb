/* elementwise: API under construction; folded into dlk.h when it lands. */
