//! A run-time activation of any rank from 1 to 6.
//!
//! burn tensors carry their rank in the type, while an imported graph only knows ranks at run
//! time, so the interpreter holds each activation as one variant per rank and converts at the
//! few ops that change rank. Rank-0 ONNX scalars are held as rank 1 of length 1.

use burn::tensor::{Device, Tensor, TensorData};

pub const MAX_RANK: usize = 6;

#[derive(Clone, Debug)]
pub enum Value {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
    R4(Tensor<4>),
    R5(Tensor<5>),
    R6(Tensor<6>),
}

/// Applies the same expression to the tensor inside a value, keeping its rank.
macro_rules! map {
    ($v:expr, $t:ident => $e:expr) => {
        match $v {
            Value::R1($t) => Value::R1($e),
            Value::R2($t) => Value::R2($e),
            Value::R3($t) => Value::R3($e),
            Value::R4($t) => Value::R4($e),
            Value::R5($t) => Value::R5($e),
            Value::R6($t) => Value::R6($e),
        }
    };
}

/// Evaluates an expression on the tensor inside a value, whatever its rank.
macro_rules! visit {
    ($v:expr, $t:ident => $e:expr) => {
        match $v {
            Value::R1($t) => $e,
            Value::R2($t) => $e,
            Value::R3($t) => $e,
            Value::R4($t) => $e,
            Value::R5($t) => $e,
            Value::R6($t) => $e,
        }
    };
}

/// Two values of the same rank, for an op between them.
macro_rules! zip {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $e:expr) => {
        match ($a, $b) {
            (Value::R1($x), Value::R1($y)) => Value::R1($e),
            (Value::R2($x), Value::R2($y)) => Value::R2($e),
            (Value::R3($x), Value::R3($y)) => Value::R3($e),
            (Value::R4($x), Value::R4($y)) => Value::R4($e),
            (Value::R5($x), Value::R5($y)) => Value::R5($e),
            (Value::R6($x), Value::R6($y)) => Value::R6($e),
            _ => unreachable!("zip! is called on values aligned to one rank"),
        }
    };
}

pub(crate) use {map, visit, zip};

impl Value {
    pub fn from_data(shape: &[usize], data: Vec<f32>, device: &Device) -> Value {
        let shape: Vec<usize> = if shape.is_empty() {
            vec![1]
        } else {
            shape.to_vec()
        };
        let data = TensorData::new(data, shape.clone());
        match shape.len() {
            1 => Value::R1(Tensor::from_data(data, device)),
            2 => Value::R2(Tensor::from_data(data, device)),
            3 => Value::R3(Tensor::from_data(data, device)),
            4 => Value::R4(Tensor::from_data(data, device)),
            5 => Value::R5(Tensor::from_data(data, device)),
            _ => Value::R6(Tensor::from_data(data, device)),
        }
    }

    pub fn rank(&self) -> usize {
        visit!(self, t => t.dims().len())
    }

    pub fn dims(&self) -> Vec<usize> {
        visit!(self, t => t.dims().to_vec())
    }

    /// The values, row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>, String> {
        visit!(self, t => t.to_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("{e:?}")))
    }

    /// The same values with another shape (of any rank from 1 to 6; rank 0 becomes `[1]`).
    pub fn reshape(self, shape: &[usize]) -> Value {
        macro_rules! to {
            ($n:literal, $V:ident) => {{
                let mut s = [0usize; $n];
                s.copy_from_slice(shape);
                Value::$V(visit!(self, t => t.reshape(s)))
            }};
        }
        match shape.len() {
            0 => self.reshape(&[1]),
            1 => to!(1, R1),
            2 => to!(2, R2),
            3 => to!(3, R3),
            4 => to!(4, R4),
            5 => to!(5, R5),
            _ => to!(6, R6),
        }
    }

    /// Prepends size-1 axes up to `rank` (NumPy broadcasting alignment).
    pub fn lift(self, rank: usize) -> Value {
        let dims = self.dims();
        if dims.len() >= rank {
            return self;
        }
        let mut shape = vec![1; rank - dims.len()];
        shape.extend(dims);
        self.reshape(&shape)
    }

    pub fn into_r4(self) -> Result<Tensor<4>, String> {
        match self {
            Value::R4(t) => Ok(t),
            other => Err(format!(
                "expected a 4-D activation, got shape {:?}",
                other.dims()
            )),
        }
    }

    pub fn into_r2(self) -> Result<Tensor<2>, String> {
        match self {
            Value::R2(t) => Ok(t),
            other => Err(format!(
                "expected a 2-D activation, got shape {:?}",
                other.dims()
            )),
        }
    }

    pub fn device(&self) -> Device {
        visit!(self, t => t.device())
    }
}

impl Value {
    /// Wraps a tensor whose rank is a const generic.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Value {
        let dims = t.dims().to_vec();
        // Reshape to the same dims through the rank-typed variants.
        match D {
            1 => Value::R1(t.reshape([dims[0]])),
            2 => Value::R2(t.reshape([dims[0], dims[1]])),
            3 => Value::R3(t.reshape([dims[0], dims[1], dims[2]])),
            4 => Value::R4(t.reshape([dims[0], dims[1], dims[2], dims[3]])),
            5 => Value::R5(t.reshape([dims[0], dims[1], dims[2], dims[3], dims[4]])),
            _ => Value::R6(t.reshape([dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]])),
        }
    }
}
