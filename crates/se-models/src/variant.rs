//! The paper's ablations as changes to a registered model: the SE module's reduction ratio,
//! squeeze and gate (§6.1–6.3), its placement in the block (§6.5) and the stages that carry it
//! (§6.4, Table 13). One config instead of one registered name per arm.

use burn::config::Config;
use se_core::{AttentionConfig, Gate, SePlacement, Squeeze};

use crate::ResNetConfig;

/// Changes to a model's attention; every field left `None` keeps the model's own.
#[derive(Config, Debug, PartialEq)]
pub struct AttentionVariant {
    /// The SE reduction ratio `r`, with the hidden width exactly `C / r` (the paper's rule).
    #[config(default = "None")]
    pub reduction: Option<usize>,
    /// The SE squeeze (`None` for NoSqueeze is `Some(Squeeze::None)`).
    #[config(default = "None")]
    pub squeeze: Option<Squeeze>,
    /// The SE gate.
    #[config(default = "None")]
    pub gate: Option<Gate>,
    /// Where the attention sits in the block.
    #[config(default = "None")]
    pub placement: Option<SePlacement>,
    /// The stages (1 to 4) that carry attention.
    #[config(default = "None")]
    pub stages: Option<Vec<usize>>,
}

/// An [`AttentionVariant`] that does not fit the model it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} needs {needs}; the model has {has}")]
pub struct VariantMismatch {
    /// The variant's field.
    pub option: &'static str,
    /// What the field needs.
    pub needs: &'static str,
    /// What the model has.
    pub has: String,
}

impl AttentionVariant {
    /// Whether every field is `None` (the model as registered).
    pub fn is_identity(&self) -> bool {
        *self == Self::new()
    }

    /// `config` with the variant's changes. SE's own options need an SE model; placement and
    /// stages need one with attention of some kind.
    pub fn apply(&self, mut config: ResNetConfig) -> Result<ResNetConfig, VariantMismatch> {
        let has = match &config.attention.module {
            None => "no attention".to_string(),
            Some(AttentionConfig::Se(_)) => "SE".to_string(),
            Some(other) => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("")
                .to_string(),
        };
        let mismatch = |option, needs| VariantMismatch {
            option,
            needs,
            has: has.clone(),
        };
        let se_options = [
            ("reduction", self.reduction.is_some()),
            ("squeeze", self.squeeze.is_some()),
            ("gate", self.gate.is_some()),
        ];
        match &mut config.attention.module {
            Some(AttentionConfig::Se(se)) => {
                if let Some(reduction) = self.reduction {
                    if reduction == 0 {
                        return Err(mismatch("reduction", "a ratio of at least 1"));
                    }
                    *se = se
                        .clone()
                        .with_reduction(reduction as f64)
                        .with_divisor(1)
                        .with_min_channels(Some(1))
                        .with_round_limit(0.0);
                }
                se.squeeze = self.squeeze.unwrap_or(se.squeeze);
                se.gate = self.gate.unwrap_or(se.gate);
            }
            _ => {
                if let Some((option, _)) = se_options.iter().find(|(_, set)| *set) {
                    return Err(mismatch(option, "an SE model"));
                }
            }
        }
        if config.attention.module.is_none() {
            if self.placement.is_some() {
                return Err(mismatch("placement", "a model with attention"));
            }
            if self.stages.is_some() {
                return Err(mismatch("stages", "a model with attention"));
            }
        }
        if let Some(placement) = self.placement {
            config.attention.placement = placement;
        }
        if let Some(stages) = &self.stages {
            config.attention_stages = Some(stages.clone());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::config;

    #[test]
    fn a_variant_changes_only_what_it_names() {
        let base = config("se_resnet20").unwrap();
        let same = AttentionVariant::new().apply(base.clone()).unwrap();
        assert_eq!(same.to_string(), base.to_string());

        let variant = AttentionVariant::new()
            .with_reduction(Some(4))
            .with_gate(Some(Gate::Relu))
            .with_placement(Some(SePlacement::Pre))
            .with_stages(Some(vec![3]));
        let changed = variant.apply(base).unwrap();
        let Some(AttentionConfig::Se(se)) = &changed.attention.module else {
            panic!("not SE: {changed:?}");
        };
        assert_eq!(
            (se.reduction, se.gate, se.squeeze),
            (4.0, Gate::Relu, Squeeze::Avg)
        );
        assert_eq!(se.hidden_channels(64), 16);
        assert_eq!(changed.attention.placement, SePlacement::Pre);
        assert_eq!(changed.attention_stages, Some(vec![3]));
    }

    #[test]
    fn stages_without_attention_cost_no_parameters() {
        // CIFAR SE-ResNet-20 with SE in stage 3 only: the plain ResNet-20 plus stage 3's three
        // SE modules over 64 channels (64 → 4 → 64, with biases: 580 parameters each).
        let plain = config("resnet20")
            .unwrap()
            .total_complexity([32, 32])
            .params;
        let stage3 = AttentionVariant::new()
            .with_stages(Some(vec![3]))
            .apply(config("se_resnet20").unwrap())
            .unwrap();
        assert_eq!(stage3.total_complexity([32, 32]).params, plain + 3 * 580);
        let device = Default::default();
        let model = stage3.init::<burn_flex::Flex>(&device);
        assert_eq!(se_core::trainable_params(&model), plain + 3 * 580);
        assert_eq!(model.se_modules().len(), 3);
        assert!(model.se_modules().iter().all(|m| m.stage == 3));
    }

    #[test]
    fn options_that_do_not_fit_the_model_are_refused() {
        let plain = config("resnet20").unwrap();
        let error = AttentionVariant::new()
            .with_reduction(Some(4))
            .apply(plain.clone())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "reduction needs an SE model; the model has no attention"
        );
        let error = AttentionVariant::new()
            .with_stages(Some(vec![1]))
            .apply(plain)
            .unwrap_err();
        assert_eq!(error.option, "stages");
        let eca = config("eca_resnet20").unwrap();
        let error = AttentionVariant::new()
            .with_gate(Some(Gate::Tanh))
            .apply(eca)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "gate needs an SE model; the model has Eca"
        );
        let zero = AttentionVariant::new().with_reduction(Some(0));
        assert!(zero.apply(config("se_resnet20").unwrap()).is_err());
        let stage5 = AttentionVariant::new().with_stages(Some(vec![4]));
        let cifar = stage5.apply(config("se_resnet20").unwrap()).unwrap();
        assert_eq!(cifar.validate().unwrap_err().field, "attention_stages");
    }
}
