//! Batch normalisation with the batch's own statistics and the clamp that follows it, as one
//! autodiff op (`batch_norm`), and its state and backward pass, which the ops that join a
//! batch norm to its convolution (`norm_depthwise`, `norm_pointwise`) share.

use super::super::norm::{self, Affine};
use super::deferred::{self, Deferred};
use super::{
    AutodiffTensor, contiguous, flex_tensor, into_contiguous, into_tensor, profile, tracked,
    unique_values_mut, values,
};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

#[derive(Debug)]
struct BatchNormBackward;

/// What batch norm's backward pass needs.
#[derive(Clone, Debug)]
pub(super) struct BatchNormState {
    pub x: FlexTensor,
    pub gamma: FlexTensor,
    pub beta: FlexTensor,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    pub clamp: (f32, f32),
    /// `[n, c, values per channel per image]`.
    pub dims: [usize; 3],
    /// The input gradient goes to x's writer unwritten (`deferred`): it offered to take it.
    pub defer: bool,
}

impl BatchNormState {
    pub fn affine(&self) -> Affine<'_> {
        Affine {
            mean: &self.mean,
            inv_std: &self.inv_std,
            gamma: values(&self.gamma),
            beta: values(&self.beta),
            clamp: self.clamp,
        }
    }

    /// The backward pass from `g`, the gradient of the output, each gradient registered for
    /// the node (x, gamma, beta) that asks for it; the input gradient over `g` where no other
    /// tensor shares it (`norm::backward_in_place`), or unwritten where x's writer takes it
    /// so (`defer`: `g` registered as it is, its map handed on). `given`: the sums
    /// `norm::backward` starts from, where the pass that made `g` took them.
    pub fn backward(
        &self,
        g: FlexTensor,
        given: Option<&[(f64, f64)]>,
        [x, gamma, beta]: [Option<NodeId>; 3],
        grads: &mut Gradients,
    ) {
        let (xs, f) = (values(&self.x), self.affine());
        if let (true, Some(id)) = (self.defer, x) {
            let g = into_contiguous(g);
            let (map, dgamma, dbeta) =
                profile::time("backward: BatchNormalization", &self.dims, || {
                    norm::backward_terms(xs, values(&g), self.dims, &f, given)
                });
            grads.register::<Flex>(id, g.clone());
            let d = Deferred {
                raw: g,
                x: self.x.clone(),
                map,
                dims: self.dims,
            };
            deferred::defer(id, d);
            self.register_affine((dgamma, dbeta), [gamma, beta], grads);
            return;
        }
        let (dx, dgamma, dbeta) = profile::time("backward: BatchNormalization", &self.dims, || {
            let mut g = into_contiguous(g);
            match unique_values_mut(&mut g) {
                Some(gs) => {
                    let (dgamma, dbeta) = norm::backward_in_place(xs, gs, self.dims, &f, given);
                    (g, dgamma, dbeta)
                }
                None => {
                    let (dx, dgamma, dbeta) = norm::backward(xs, values(&g), self.dims, &f, given);
                    (
                        flex_tensor(dx, self.x.layout().shape().clone()),
                        dgamma,
                        dbeta,
                    )
                }
            }
        });
        if let Some(id) = x {
            grads.register::<Flex>(id, dx);
        }
        self.register_affine((dgamma, dbeta), [gamma, beta], grads);
    }

    /// Registers gamma's and beta's gradients for the nodes that ask for them.
    fn register_affine(
        &self,
        (dgamma, dbeta): (Vec<f32>, Vec<f32>),
        [gamma, beta]: [Option<NodeId>; 2],
        grads: &mut Gradients,
    ) {
        let c = self.dims[1];
        if let Some(id) = gamma {
            grads.register::<Flex>(id, flex_tensor(dgamma, [c]));
        }
        if let Some(id) = beta {
            grads.register::<Flex>(id, flex_tensor(dbeta, [c]));
        }
    }
}

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<BatchNormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ids = ops.parents.map(|p| p.map(|node| node.id));
        let g = grads.consume::<Flex>(&ops.node);
        ops.state.backward(g, None, ids, grads);
    }
}

/// Batch normalisation with the batch's own statistics (training mode) and the clamp that
/// follows it (ReLU, ReLU6; `(-inf, inf)` for none) as one autodiff op: the output, and the
/// batch mean and biased variance per channel (untracked, for the running statistics).
/// `None` when the tensors are not autodiff flex tensors or `x` has no channel axis.
pub fn batch_norm<const D: usize>(
    x: &Tensor<D>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
    clamp: (f32, f32),
) -> Option<(Tensor<D>, Tensor<1>, Tensor<1>)> {
    let shape = x.dims();
    if D < 2 || shape[1] != gamma.dims()[0] || shape[1] != beta.dims()[0] {
        return None;
    }
    let (n, c) = (shape[0], shape[1]);
    let dims = [n, c, shape[2..].iter().product()];
    let (xa, ga, ba) = (tracked(x)?, tracked(gamma)?, tracked(beta)?);
    let (xv, gv, bv) = (
        contiguous(xa.primitive()),
        contiguous(ga.primitive()),
        contiguous(ba.primitive()),
    );
    let norm::Normalized {
        out,
        mean,
        var,
        inv_std,
    } = norm::train_forward(values(&xv), dims, values(&gv), values(&bv), epsilon, clamp);
    let out = flex_tensor(out, shape);
    let untracked = |v: &[f32]| into_tensor(AutodiffTensor::new(flex_tensor(v.to_vec(), [c])));
    let (mean_t, var_t) = (untracked(&mean), untracked(&var));
    let y = match BatchNormBackward
        .prepare::<NoCheckpointing>([xa.node(), ga.node(), ba.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            BatchNormState {
                x: xv,
                gamma: gv,
                beta: bv,
                mean,
                inv_std,
                clamp,
                dims,
                defer: deferred::offered(xa.id()),
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some((into_tensor(y), mean_t, var_t))
}
