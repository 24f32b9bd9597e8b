"""Squeeze-and-excitation (Hu et al., 2018), as used inside every EfficientNet MBConv block.

For a feature map x of shape (N, H, W, C):

    squeeze   s = mean over H, W of x                    (N, C)
    reduce    z = act(s·W_r + b_r)                       (N, C_r),  C_r = max(1, int(C_in · 0.25))
    expand    g = σ(z·W_e + b_e)                         (N, C)     a gate in (0, 1) per channel
    excite    y = x · g  (broadcast over H, W)           (N, H, W, C)

C_in is the *block's* input channel count, not the expanded one. The reference implementation writes
the reduce and expand steps as 1×1 convolutions with bias on a 1×1 map; on the pooled vector they are
exactly linear layers, which is how they are written here.

Training keeps x and g for the backward (dx = dy · g, dg = Σ_{h,w} dy · x), but not y: the projection
after SE needs y for its own backward, and ``output()`` remakes it there from x and g, one multiply per
element, instead of holding a third activation-sized array between the passes.
"""

from tinyeffnet.layers import Activation, GlobalAvgPool, Layer, Linear, Sigmoid


class SqueezeExcite(Layer):
    def __init__(self, channels, reduced, activation, rng, dtype):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.reduce = Linear(channels, reduced, rng, dtype, init="conv")
        self.act = Activation(activation)
        self.expand = Linear(reduced, channels, rng, dtype, init="conv")
        self.gate = Sigmoid()

    def forward(self, x):
        g = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        if self.training:
            self.x, self.g = x, g
        return self.backend.scale.channel_scale_forward(x, g)

    def output(self):
        """The last training forward's y = x · g, remade from the kept x and g: bitwise the same array (the
        same kernel on the same inputs). Valid until ``backward`` releases x and g."""
        return self.backend.scale.channel_scale_forward(self.x, self.g)

    def backward(self, dy):
        dx, dg = self.backend.scale.channel_scale_backward(*self.release("x", "g"), dy)
        ds = self.reduce.backward(self.act.backward(self.expand.backward(self.gate.backward(dg))))
        self.backend.elementwise.add_into(dx, self.pool.backward(ds))
        return dx
