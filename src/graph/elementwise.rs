//! The elementwise op families (one input, two with broadcasting, any number) and the
//! reductions, with their ONNX names.

use serde::{Deserialize, Serialize};

/// Element-wise functions of one input without parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Sqrt,
    Exp,
    Log,
    Abs,
    Neg,
    Reciprocal,
    Floor,
    Ceil,
    HardSwish,
    Softplus,
    Silu,
    Mish,
    Sin,
    Cos,
    Sign,
    Round,
    Softsign,
}

impl Unary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Unary::Relu => "Relu",
            Unary::Sigmoid => "Sigmoid",
            Unary::Tanh => "Tanh",
            Unary::Erf => "Erf",
            Unary::Sqrt => "Sqrt",
            Unary::Exp => "Exp",
            Unary::Log => "Log",
            Unary::Abs => "Abs",
            Unary::Neg => "Neg",
            Unary::Reciprocal => "Reciprocal",
            Unary::Floor => "Floor",
            Unary::Ceil => "Ceil",
            Unary::HardSwish => "HardSwish",
            Unary::Softplus => "Softplus",
            Unary::Silu => "Silu",
            Unary::Mish => "Mish",
            Unary::Sin => "Sin",
            Unary::Cos => "Cos",
            Unary::Sign => "Sign",
            Unary::Round => "Round",
            Unary::Softsign => "Softsign",
        }
    }

    pub const ALL: [Unary; 21] = [
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Erf,
        Unary::Sqrt,
        Unary::Exp,
        Unary::Log,
        Unary::Abs,
        Unary::Neg,
        Unary::Reciprocal,
        Unary::Floor,
        Unary::Ceil,
        Unary::HardSwish,
        Unary::Softplus,
        Unary::Silu,
        Unary::Mish,
        Unary::Sin,
        Unary::Cos,
        Unary::Sign,
        Unary::Round,
        Unary::Softsign,
    ];
}

/// Element-wise functions of two inputs with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl Binary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
            Binary::Pow => "Pow",
        }
    }

    pub const ALL: [Binary; 5] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Pow,
    ];
}

/// Element-wise functions of any number of inputs with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nary {
    Sum,
    Mean,
    Max,
    Min,
}

impl Nary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Nary::Sum => "Sum",
            Nary::Mean => "Mean",
            Nary::Max => "Max",
            Nary::Min => "Min",
        }
    }

    pub const ALL: [Nary; 4] = [Nary::Sum, Nary::Mean, Nary::Max, Nary::Min];
}

/// Reductions over axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduce {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSumExp,
}

impl Reduce {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Reduce::Mean => "ReduceMean",
            Reduce::Sum => "ReduceSum",
            Reduce::Max => "ReduceMax",
            Reduce::Min => "ReduceMin",
            Reduce::Prod => "ReduceProd",
            Reduce::L1 => "ReduceL1",
            Reduce::L2 => "ReduceL2",
            Reduce::SumSquare => "ReduceSumSquare",
            Reduce::LogSumExp => "ReduceLogSumExp",
        }
    }

    /// The opset from which `axes` is an input rather than an attribute.
    pub fn axes_input_from(self) -> i64 {
        if self == Reduce::Sum { 13 } else { 18 }
    }

    pub const ALL: [Reduce; 9] = [
        Reduce::Mean,
        Reduce::Sum,
        Reduce::Max,
        Reduce::Min,
        Reduce::Prod,
        Reduce::L1,
        Reduce::L2,
        Reduce::SumSquare,
        Reduce::LogSumExp,
    ];
}
